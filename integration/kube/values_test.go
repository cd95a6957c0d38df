package kube

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// The chart's values that change what a pod does, set together in one
// release and seen at work under the kubelet: the container's name and
// CONTAINER_NAME, its env, resources (QoS), a preStop sleep (which the
// derived deadline leaves its time: grace 12 s - 2 s - 5 s = a 5 s
// deadline), the install directory, the wrapper's port (kubelet's probes
// follow it) and kubelet's probe rates, the installer's resources, -debug,
// extra flags (-skip-commands), the pod's labels in the
// downward API file, its annotations, the scheduling values, the events'
// extra labels and the labels file's exclusions (at metrics-mock), and
// imagePullSecrets.
func TestPodValues(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	vals := values(`- name: whoami
  command: ["sh", "-c", "echo container=$CONTAINER_NAME greeting=$GREETING; grep tier /etc/podinfo/labels"]
  restartPolicy: Never
- name: later
  command: ["sh", "-c", "mkdir -p /tmp; while [ ! -f /tmp/go ]; do sleep 0.2; done"]
  restartPolicy: Never
- name: skipped
  command: ["sleep", "100000"]
- name: stubborn
  command: ["sh", "-c", "trap 'echo ignoring TERM' TERM; while true; do sleep 0.2; done"]
`, 12)
	vals["workload"] = map[string]any{
		"terminationGracePeriodSeconds": 12,
		"podLabels":                     map[string]any{"tier": "web"},
		"podAnnotations":                map[string]any{"example.com/owner": "shop-team"},
		"nodeSelector":                  map[string]any{"kubernetes.io/hostname": "localhost"},
		"tolerations":                   []any{map[string]any{"key": "example.com/spot", "operator": "Exists", "effect": "NoSchedule"}},
		"affinity": map[string]any{"nodeAffinity": map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{
			"nodeSelectorTerms": []any{map[string]any{"matchExpressions": []any{map[string]any{"key": "kubernetes.io/os", "operator": "In", "values": []any{"linux"}}}}}}}},
	}
	vals["imagePullSecrets"] = []any{map[string]any{"name": "regcred"}}
	app := vals["app"].(map[string]any)
	app["name"] = "shop"
	app["env"] = []any{map[string]any{"name": "GREETING", "value": "hello"}}
	app["resources"] = map[string]any{"requests": map[string]any{"cpu": "10m", "memory": "32Mi"}, "limits": map[string]any{"memory": "256Mi"}}
	app["lifecycle"] = map[string]any{"preStop": map[string]any{"sleep": map[string]any{"seconds": 2}}}
	w := vals["wrapper"].(map[string]any)
	w["installDir"] = "/opt/pw"
	w["httpPort"] = 9111
	w["debug"] = true
	w["extraArgs"] = []any{"-skip-commands=skipped"}
	w["extraLabels"] = map[string]any{"team": "shop"}
	w["labelsFileExclude"] = []any{"pod-template-hash", "tier"}
	w["installer"] = map[string]any{"resources": map[string]any{"requests": map[string]any{"cpu": "20m", "memory": "24Mi"}, "limits": map[string]any{"cpu": "200m", "memory": "48Mi"}}}
	w["probes"] = map[string]any{
		"liveness":  map[string]any{"periodSeconds": 2, "timeoutSeconds": 1},
		"readiness": map[string]any{"periodSeconds": 1, "failureThreshold": 1, "timeoutSeconds": 1},
		"startup":   map[string]any{"periodSeconds": 1, "failureThreshold": 60, "timeoutSeconds": 1},
	}
	vals["mocks"] = map[string]any{"metrics": map[string]any{"enabled": true, "image": "process-wrapper/metrics-mock:kube", "imagePullPolicy": "Never"}}
	install(t, ns, vals)
	events := waitComponent(t, ns, "metrics-mock", 2*time.Minute)
	pod := waitPod(t, ns, 2*time.Minute, "the pod to be Ready (kubelet probing port 9111)", ready)

	if pod.Status.QOSClass != corev1.PodQOSBurstable || pod.Annotations["example.com/owner"] != "shop-team" || pod.Spec.Containers[0].Name != "shop" {
		t.Errorf("pod: QoS %s, annotations %v, container %s", pod.Status.QOSClass, pod.Annotations, pod.Spec.Containers[0].Name)
	}
	if got := pod.Spec.Containers[0].Command; len(got) != 1 || got[0] != "/opt/pw/process-wrapper" {
		t.Errorf("the app container runs %v", got)
	}
	// the installer ran within its limits; kubelet probes at the given rates
	if st := containerStatus(pod, "install-process-wrapper"); st.State.Terminated == nil || st.State.Terminated.ExitCode != 0 ||
		pod.Spec.InitContainers[0].Resources.Limits.Memory().String() != "48Mi" {
		t.Errorf("installer: %s, limits %v", describe(pod), pod.Spec.InitContainers[0].Resources.Limits)
	}
	if r := pod.Spec.Containers[0].ReadinessProbe; r.PeriodSeconds != 1 || r.TimeoutSeconds != 1 || pod.Spec.Containers[0].StartupProbe.FailureThreshold != 60 {
		t.Errorf("probes: readiness %+v, startup %+v", r, pod.Spec.Containers[0].StartupProbe)
	}
	waitfor.Condition(t, 30*time.Second, "the whoami lines", func() bool {
		l := logsOf(t, ns, pod.Name, "shop", false)
		return has(l, "app", "whoami", "msg", "container=shop greeting=hello") && has(l, "app", "whoami", "msg", `tier="web"`)
	})
	l := logsOf(t, ns, pod.Name, "shop", false)
	if !has(l, "level", "debug") {
		t.Error("-debug: no debug line")
	}
	if !has(l, "app", "process-wrapper", "msg", "skipping process", "process", "skipped") || has(l, "msg", "process started", "process", "skipped") {
		t.Error("-skip-commands=skipped: the process was not skipped")
	}
	// an event once metrics-mock is up (the first ones may have gone out
	// before it was): the later process's exit
	if _, errOut, err := execInContainer(t, ns, pod.Name, "shop", "touch", "/tmp/go"); err != nil {
		t.Fatalf("exec touch: %v %s", err, errOut)
	}
	waitfor.Condition(t, 30*time.Second, "the events' labels at metrics-mock", func() bool {
		resp, err := http.Get("http://" + events.Status.PodIP + ":9998/events?event=process_exit&process=later")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var got []struct {
			Pod    string            `json:"pod"`
			Labels map[string]string `json:"labels"`
		}
		if json.NewDecoder(resp.Body).Decode(&got) != nil {
			return false
		}
		for _, e := range got {
			if e.Pod == pod.Name {
				if _, excluded := e.Labels["tier"]; e.Labels["team"] != "shop" || excluded || e.Labels["pod-template-hash"] != "" {
					t.Errorf("event labels %v: want team=shop (extraLabels), without tier and pod-template-hash (labelsFileExclude)", e.Labels)
				}
				return true
			}
		}
		return false
	})

	// deletion: kubelet runs the 2 s preStop sleep, then sends SIGTERM; the
	// wrapper's deadline, 5 s, kills the stubborn process
	deleted, pod, lines := deleteAndWait(t, ns, pod, "shop")
	term := containerStatus(pod, "shop").State.Terminated
	var termAt time.Time // the wrapper's SIGTERM
	for _, l := range lines {
		if l["app"] == "process-wrapper" && l["msg"] == "shutting down" {
			termAt, _ = time.Parse(time.RFC3339Nano, l["ts"])
		}
	}
	if d := termAt.Sub(deleted); termAt.IsZero() || d < 1500*time.Millisecond {
		t.Errorf("SIGTERM reached the wrapper %s after the deletion: before the 2 s preStop sleep ended", d)
	}
	// the deadline derived with the preStop's time taken off: 12 - 2 - 5 =
	// 5 s from the SIGTERM (7 s without it); kubelet's times are cut to the
	// second
	if d := term.FinishedAt.Time.Sub(termAt); term.ExitCode != 137 || d < 3800*time.Millisecond || d > 6*time.Second {
		t.Errorf("the container ended %s after the SIGTERM with %d: want 137 at the 5 s deadline", d, term.ExitCode)
	}
	if !strings.Contains(describe(pod), "terminated 137") {
		t.Errorf("%s", describe(pod))
	}
}
