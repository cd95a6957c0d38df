package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// The chart injects the wrapper into a container of an unrelated image (a
// static busybox) as a user installs it: the init container copies it into
// an emptyDir, the app container runs it with the config of the values.
// kubelet's probes on /readiness and /liveness pass and the pod is Ready;
// kubectl logs shows each process's lines as logfmt with their labels; the
// downward API's variables reach the processes; and kubectl exec runs the
// injected binary.
func TestInjection(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	install(t, ns, values(webProcess+`- name: ticker
  command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done"]
  logLabels: {team: shop, tier: web}
- name: whoami
  command: ["sh", "-c", "echo pod=$POD_NAME ns=$POD_NAMESPACE node=$NODE_NAME container=$CONTAINER_NAME"]
  restartPolicy: Never
`, 12))
	pod := waitPod(t, ns, 2*time.Minute, "the pod to be Ready", ready)
	if st := appStatus(pod); st.RestartCount != 0 || st.Started == nil || !*st.Started || !st.Ready {
		t.Errorf("app container: %s", describe(pod))
	}
	waitfor.Condition(t, 30*time.Second, "kubectl logs to show the ticker's labelled lines", func() bool {
		return has(logs(t, ns, pod.Name, false), "level", "info", "app", "ticker", "stream", "stdout", "msg", "tick 2", "team", "shop", "tier", "web")
	})
	l := logs(t, ns, pod.Name, false)
	if !has(l, "app", "process-wrapper", "msg", "starting") {
		t.Errorf("the wrapper's own start line is not in kubectl logs: %v", l)
	}
	// the downward API's variables of the chart reach the processes
	if want := "pod=" + pod.Name + " ns=" + ns + " node=localhost container=app"; !has(l, "app", "whoami", "msg", want) {
		t.Errorf("no line %q of the whoami process in kubectl logs: %v", want, l)
	}
	out, errOut, err := execIn(t, ns, pod.Name, "/process-wrapper/process-wrapper", "-version")
	if err != nil || !strings.HasPrefix(out, "process-wrapper ") {
		t.Errorf("kubectl exec process-wrapper -version: %v, stdout %q, stderr %q", err, out, errOut)
	}
}

// Deleting the pod: kubelet's SIGTERM reaches the wrapper, which stops its
// processes and SIGKILLs the one that ignores SIGTERM at its deadline: the
// derived one (grace 12 s less 5 s: 7 s), or one given in the values (4 s).
// kubelet records SPEC.md's exit code, 137 (128+9 for the killed process),
// and the container ends before kubelet's own grace period does. A
// finalizer keeps the pod to read that status.
func TestPodDeletion(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, given string
		deadline    time.Duration
	}{
		{"derived", "", 7 * time.Second},
		{"given", "4s", 4 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ns := namespace(t)
			vals := values(`- name: polite
  command: ["sh", "-c", "trap 'echo bye; exit 0' TERM; while true; do sleep 0.2; done"]
- name: stubborn
  command: ["sh", "-c", "trap 'echo ignoring TERM' TERM; while true; do sleep 0.2; done"]
`, 12)
			vals["wrapper"].(map[string]any)["gracefulShutdownDeadline"] = c.given
			install(t, ns, vals)
			pod := waitPod(t, ns, 2*time.Minute, "the pod to be Ready", ready)
			deleted, pod, l := deleteAndWait(t, ns, pod, "app")
			term := appStatus(pod).State.Terminated
			if term.ExitCode != 137 {
				t.Errorf("exit code %d recorded by kubelet, want 137 (the stubborn process killed at the deadline): %s", term.ExitCode, describe(pod))
			}
			graceEnd := pod.DeletionTimestamp.Time // deletion + terminationGracePeriodSeconds
			if !term.FinishedAt.Time.Before(graceEnd) {
				t.Errorf("the container finished at %s, not before kubelet's grace period ended at %s", term.FinishedAt.Time, graceEnd)
			}
			// from the SIGTERM on (kubelet takes a moment to act on the
			// deletion); kubelet's times have a resolution of a second
			var sigterm time.Time
			for _, line := range l {
				if line["app"] == "process-wrapper" && line["msg"] == "shutting down" {
					sigterm, _ = time.Parse(time.RFC3339Nano, line["ts"])
				}
			}
			if d := term.FinishedAt.Time.Sub(sigterm); sigterm.IsZero() || d < c.deadline-1200*time.Millisecond || d > c.deadline+time.Second {
				t.Errorf("the container finished %s after the SIGTERM (%s; deleted at %s), not at the wrapper's %s deadline", d, sigterm, deleted, c.deadline)
			}
			for _, want := range [][]string{
				{"app", "polite", "msg", "bye"},
				{"app", "stubborn", "msg", "ignoring TERM"},
				{"app", "process-wrapper", "msg", "shutting down"},
				{"app", "process-wrapper", "msg", "exiting", "code", "137"},
			} {
				if !has(l, want...) {
					t.Errorf("no line %v in the logs of the deleted pod", want)
				}
			}
		})
	}
}

// One process's liveness failure: the wrapper restarts that process and
// kubelet, with the chart's probe sizing, leaves the container alone
// (restartCount stays 0 through kubelet's whole liveness window). Then a
// process failed for good (exit 3 under Never) keeps /liveness at 503 and
// kubelet restarts the container; the run it stopped ended with that
// process's code.
func TestLivenessFailure(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	install(t, ns, values(`- name: flaky
  command: ["sh", "-c", "mkdir -p /tmp && touch /tmp/alive && exec sleep 100000"]
  liveness: {exec: {command: [test, -f, /tmp/alive]}, periodSeconds: 1, failureThreshold: 2}
- name: doomed
  command: ["sh", "-c", "while [ ! -f /tmp/fail ]; do sleep 0.2; done; exit 3"]
  restartPolicy: Never
`, 12))
	pod := waitPod(t, ns, 2*time.Minute, "the pod to be Ready", ready)
	var probe *corev1.Probe
	for _, c := range pod.Spec.Containers {
		if c.Name == "app" {
			probe = c.LivenessProbe
		}
	}
	if probe == nil {
		t.Fatal("the chart gave the app container no liveness probe")
	}
	window := time.Duration(probe.PeriodSeconds*probe.FailureThreshold) * time.Second

	if _, errOut, err := execIn(t, ns, pod.Name, "rm", "/tmp/alive"); err != nil {
		t.Fatalf("exec rm: %v %s", err, errOut)
	}
	waitfor.Condition(t, 30*time.Second, "the wrapper to restart the flaky process", func() bool {
		return has(logs(t, ns, pod.Name, false), "app", "process-wrapper", "msg", "liveness probe failed: restarting process", "process", "flaky")
	})
	// kubelet's window, from the failure on: the container is never
	// restarted (every change of the pod's status in that time is seen)
	wctx, cancel := context.WithTimeout(context.Background(), window+2*time.Second)
	defer cancel()
	w, err := client.CoreV1().Pods(ns).Watch(wctx, metav1.ListOptions{FieldSelector: "metadata.name=" + pod.Name})
	if err != nil {
		t.Fatal(err)
	}
	for ev := range w.ResultChan() {
		if p, ok := ev.Object.(*corev1.Pod); ok && appStatus(p).RestartCount != 0 {
			t.Fatalf("kubelet restarted the container while the wrapper healed one process (window %s): %s", window, describe(p))
		}
	}
	w.Stop()
	waitPod(t, ns, 30*time.Second, "the pod to be Ready again", func(p *corev1.Pod) bool { return p.Name == pod.Name && ready(p) })

	if _, errOut, err := execIn(t, ns, pod.Name, "touch", "/tmp/fail"); err != nil {
		t.Fatalf("exec touch: %v %s", err, errOut)
	}
	p := waitPod(t, ns, window+time.Minute, "kubelet to restart the container", func(p *corev1.Pod) bool {
		return p.Name == pod.Name && appStatus(p).RestartCount >= 1
	})
	if last := appStatus(p).LastTerminationState.Terminated; last == nil || last.ExitCode != 3 {
		t.Errorf("the stopped run's end: %+v, want exit code 3 (the process failed for good): %s", last, describe(p))
	}
	if !has(logs(t, ns, pod.Name, true), "app", "process-wrapper", "msg", "exiting", "code", "3") {
		t.Error("the previous run's logs lack the wrapper's exiting code=3 line")
	}
}

// process-wrapper ctl through kubectl exec, in an image with no shell
// tools of the wrapper's own: status, then a stop kubelet sees as the
// pod not Ready, and must not undo (the stopped process stays live, so
// kubelet's liveness probe passes and the container is not restarted);
// then a start makes the pod Ready again.
func TestCtlInPod(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	install(t, ns, values(webProcess+`- name: worker
  command: ["sh", "-c", "trap 'echo worker stops; exit 0' TERM; while true; do sleep 0.2; done"]
`, 12))
	pod := waitPod(t, ns, 2*time.Minute, "the pod to be Ready", ready)
	ctl := func(args ...string) string {
		t.Helper()
		out, errOut, err := execIn(t, ns, pod.Name, append([]string{"/process-wrapper/process-wrapper", "ctl"}, args...)...)
		if err != nil {
			t.Fatalf("kubectl exec ... ctl %q: %v, stdout %q, stderr %q", args, err, out, errOut)
		}
		return out
	}
	status := ctl("status")
	for _, want := range []string{"NAME", "web", "worker", "running"} {
		if !strings.Contains(status, want) {
			t.Errorf("ctl status lacks %q:\n%s", want, status)
		}
	}
	t.Logf("kubectl exec %s -c app -- /process-wrapper/process-wrapper ctl status:\n%s", pod.Name, status)
	out := ctl("stop", "worker")
	if !strings.HasPrefix(out, "stop worker: stopped: stopped by request of uid ") {
		t.Errorf("ctl stop worker: %q", out)
	}
	t.Logf("ctl stop worker: %s", out)
	waitPod(t, ns, 30*time.Second, "the pod to be NotReady", func(p *corev1.Pod) bool { return !ready(p) })
	// kubelet's liveness window passes without a restart
	var live *corev1.Probe
	for _, c := range pod.Spec.Containers {
		if c.Name == "app" {
			live = c.LivenessProbe
		}
	}
	window := time.Duration(live.PeriodSeconds*live.FailureThreshold+2) * time.Second
	if waitfor.Poll(window, func() bool {
		p, err := client.CoreV1().Pods(ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
		return err == nil && appStatus(p).RestartCount > 0
	}) {
		t.Fatalf("kubelet restarted the container within its liveness window (%s) after ctl stop", window)
	}
	if !has(logs(t, ns, pod.Name, false), "app", "worker", "msg", "worker stops") {
		t.Error("the worker's stop line is not in the logs")
	}
	if out := ctl("start", "worker"); !strings.HasPrefix(out, "start worker: running (pid ") {
		t.Errorf("ctl start worker: %q", out)
	}
	waitPod(t, ns, 30*time.Second, "the pod to be Ready again", ready)
}
