package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// sidecarConfig is the wrapper's processes beside a Job's main container:
// a long-running helper that ends on SIGTERM.
const sidecarConfig = `- name: helper
  command: ["sh", "-c", "trap 'exit 0' TERM; echo helping; while true; do sleep 0.2; done"]
`

// jobDone waits for the Job to complete and returns it with its pod.
func jobDone(t *testing.T, ns, name string, timeout time.Duration) (*batchv1.Job, *corev1.Pod) {
	t.Helper()
	job, pod := jobEnded(t, ns, name, timeout)
	if job.Status.Succeeded != 1 {
		t.Fatalf("the Job %s failed: %+v; %s", name, job.Status, describe(pod))
	}
	return job, pod
}

// jobEnded waits for the Job to succeed or fail and returns it with its
// pod that ended.
func jobEnded(t *testing.T, ns, name string, timeout time.Duration) (*batchv1.Job, *corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	var job *batchv1.Job
	var last string
	if !waitfor.Poll(timeout, func() bool {
		j, err := client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false
		}
		job = j
		last = fmt.Sprintf("succeeded=%d failed=%d active=%d", j.Status.Succeeded, j.Status.Failed, j.Status.Active)
		return j.Status.Succeeded == 1 || j.Status.Failed > 0
	}) {
		pods, _ := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + name})
		for i := range pods.Items {
			last += "; " + describe(&pods.Items[i])
		}
		t.Fatalf("the Job %s did not end within %v: %s", name, timeout, last)
	}
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + name})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("the Job's pods: %v", err)
	}
	for i := range pods.Items {
		if ph := pods.Items[i].Status.Phase; ph == corev1.PodSucceeded || ph == corev1.PodFailed {
			return job, &pods.Items[i]
		}
	}
	t.Fatalf("no pod of the Job %s ended", name)
	return nil, nil
}

// The Job pattern without the API server: the main work is an essential
// process of the wrapper, its log shipper another. When main ends, the
// wrapper stops the shipper and exits with main's code: the Job completes,
// or fails with that code, under a real kubelet.
func TestJobEssential(t *testing.T) {
	t.Parallel()
	for _, code := range []int{0, 3} {
		t.Run(fmt.Sprint("exit", code), func(t *testing.T) {
			t.Parallel()
			ns := namespace(t)
			vals := values(fmt.Sprintf(`- name: shipper
  command: ["sh", "-c", "trap 'echo shipper flushed; exit 0' TERM; echo shipping; while true; do sleep 0.2; done"]
- name: main
  command: ["sh", "-c", "echo working; sleep 1; exit %d"]
  restartPolicy: Never
  essential: true
  dependsOn: [{name: shipper, condition: started}]
`, code), 12)
			vals["workload"] = map[string]any{"kind": "Job", "jobRestartPolicy": "Never", "backoffLimit": 0, "terminationGracePeriodSeconds": 12}
			install(t, ns, vals)
			job, pod := jobEnded(t, ns, "demo", 3*time.Minute)
			if (code == 0) != (job.Status.Succeeded == 1) {
				t.Errorf("main exited %d: the Job %+v", code, job.Status)
			}
			app := containerStatus(pod, "app")
			if app.State.Terminated == nil || app.State.Terminated.ExitCode != int32(code) || app.RestartCount != 0 {
				t.Fatalf("the wrapper's container, want exit %d: %s", code, describe(pod))
			}
			l := logs(t, ns, pod.Name, false)
			for _, want := range [][]string{
				{"app", "process-wrapper", "msg", "essential process ended: stopping the others", "process", "main", "code", fmt.Sprint(code)},
				{"app", "shipper", "msg", "shipper flushed"},
				{"app", "process-wrapper", "msg", "exiting", "code", fmt.Sprint(code)},
			} {
				if !has(l, want...) {
					t.Errorf("the wrapper's logs lack %q: %v", want, l)
				}
			}
		})
	}
}

// completedAt is when the Job's Complete condition turned true.
func completedAt(t *testing.T, job *batchv1.Job) time.Time {
	t.Helper()
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Time
		}
	}
	t.Fatalf("the Job has no Complete condition: %+v", job.Status.Conditions)
	return time.Time{}
}

func containerStatus(p *corev1.Pod, name string) corev1.ContainerStatus {
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if cs.Name == name {
			return cs
		}
	}
	return corev1.ContainerStatus{}
}

// The wrapper as a Job's sidecar with HANDLE_TERMINATION, the chart's RBAC
// and the pod's real service-account token: the main container ends, the
// wrapper sees it through the API server (reached by the kubernetes
// Service), drains and exits 0, and the Job completes. Under OnFailure a
// main container that fails once is restarted by kubelet while the wrapper
// waits. The time from the main container's end to Complete is logged.
func TestJobTermination(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, policy, main string
		mainRestarts       int32
	}{
		{"never", "Never", "echo working; sleep 2; echo done", 0},
		// the emptyDir the wrapper was installed into outlives the restart: it keeps the mark
		{"onfailure", "OnFailure", "if [ ! -f /scratch/failed-once ]; then touch /scratch/failed-once; exit 1; fi; echo done", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ns := namespace(t)
			vals := values(sidecarConfig, 12)
			vals["workload"] = map[string]any{
				// under OnFailure, each restart of a container counts against backoffLimit (a restart count
				// reaching it fails the Job)
				"kind": "Job", "jobRestartPolicy": c.policy, "backoffLimit": 3, "terminationGracePeriodSeconds": 12,
				"extraContainers": []any{map[string]any{
					"name": "main", "image": appImage, "imagePullPolicy": "Never",
					"command":      []any{"sh", "-c", c.main},
					"volumeMounts": []any{map[string]any{"name": "process-wrapper", "mountPath": "/scratch"}},
				}},
			}
			// the followed container named, as every container but the wrapper's is by default
			vals["wrapper"].(map[string]any)["termination"] = map[string]any{"enabled": true, "follow": []any{"main"}}
			install(t, ns, vals)
			job, pod := jobDone(t, ns, "demo", 3*time.Minute)
			main, app := containerStatus(pod, "main"), containerStatus(pod, "app")
			if main.State.Terminated == nil || main.State.Terminated.ExitCode != 0 || main.RestartCount != c.mainRestarts {
				t.Errorf("main container: %s", describe(pod))
			}
			if app.State.Terminated == nil || app.State.Terminated.ExitCode != 0 || app.RestartCount != 0 {
				t.Errorf("the wrapper's container: %s", describe(pod))
			}
			if main.State.Terminated == nil || app.State.Terminated == nil {
				return
			}
			if app.State.Terminated.FinishedAt.Time.Before(main.State.Terminated.FinishedAt.Time) {
				t.Errorf("the wrapper ended at %s, before the main container at %s", app.State.Terminated.FinishedAt, main.State.Terminated.FinishedAt)
			}
			l := logs(t, ns, pod.Name, false)
			if !has(l, "app", "helper", "msg", "helping") || !has(l, "app", "process-wrapper", "msg", "exiting", "code", "0") {
				t.Errorf("the wrapper's logs lack the helper's line or its exit 0: %v", l)
			}
			t.Logf("HANDLE_TERMINATION (%s): the main container ended at %s, the Job completed %s later",
				c.policy, main.State.Terminated.FinishedAt.Time.Format(time.TimeOnly), completedAt(t, job).Sub(main.State.Terminated.FinishedAt.Time))
		})
	}
}

// The same Job with a native sidecar instead: the wrapper, injected as the
// chart does it, in an init container with restartPolicy Always (the
// manifest written here, not the chart's), HANDLE_TERMINATION off. kubelet
// itself ends the sidecar once the main container has ended.
func TestJobNativeSidecar(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "sidecar"}, Data: map[string]string{"config.yaml": sidecarConfig}}
	if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	always := corev1.ContainerRestartPolicyAlways
	grace := int64(12)
	zero := int32(0)
	installMount := corev1.VolumeMount{Name: "process-wrapper", MountPath: "/install"}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "native"},
		Spec: batchv1.JobSpec{BackoffLimit: &zero, Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			InitContainers: []corev1.Container{
				{Name: "install", Image: wrapperImage, ImagePullPolicy: corev1.PullNever, Args: []string{"-install", "/install"}, VolumeMounts: []corev1.VolumeMount{installMount}},
				{
					Name: "wrapper", Image: appImage, ImagePullPolicy: corev1.PullNever, RestartPolicy: &always,
					Command: []string{"/process-wrapper/process-wrapper", "-config", "/etc/process-wrapper/config.yaml", "-graceful-shutdown-deadline", "7s"},
					VolumeMounts: []corev1.VolumeMount{
						{Name: "process-wrapper", MountPath: "/process-wrapper", ReadOnly: true},
						{Name: "config", MountPath: "/etc/process-wrapper", ReadOnly: true},
					},
					StartupProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readiness", Port: intstr.FromInt(8111)}}, PeriodSeconds: 1, FailureThreshold: 30},
				},
			},
			Containers: []corev1.Container{{
				Name: "main", Image: appImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "echo working; sleep 2; echo done"},
			}},
			Volumes: []corev1.Volume{
				{Name: "process-wrapper", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "sidecar"}}}},
			},
		}}},
	}
	if _, err := client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
		t.Fatal(err)
	}
	done, pod := jobDone(t, ns, "native", 3*time.Minute)
	main := containerStatus(pod, "main")
	if main.State.Terminated == nil || main.State.Terminated.ExitCode != 0 {
		t.Fatalf("main container: %s", describe(pod))
	}
	t.Logf("native sidecar: the main container ended at %s, the Job completed %s later",
		main.State.Terminated.FinishedAt.Time.Format(time.TimeOnly), completedAt(t, done).Sub(main.State.Terminated.FinishedAt.Time))
}

// Restricted Pod Security: a namespace that enforces it admits the chart's
// pods as ci/restricted.yaml configures them (the workload and both mocks
// run and are Ready). A process there that asks for another user fails
// its start naming the capability the wrapper lacks.
func TestRestrictedPodSecurity(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	ctx := context.Background()
	nsObj, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	nsObj.Labels["pod-security.kubernetes.io/enforce-version"] = "latest"
	if _, err := client.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// the namespace does refuse what restricted forbids: a plain pod
	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: appImage, ImagePullPolicy: corev1.PullNever}}}}
	if _, err := client.CoreV1().Pods(ns).Create(ctx, plain, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Fatalf("a pod without a securityContext in a restricted namespace: %v", err)
	}
	restricted := func(config string) map[string]any {
		vals := values(config, 12)
		vals["workload"].(map[string]any)["podSecurityContext"] = map[string]any{
			"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": map[string]any{"type": "RuntimeDefault"}}
		vals["app"].(map[string]any)["securityContext"] = map[string]any{"allowPrivilegeEscalation": false, "capabilities": map[string]any{"drop": []any{"ALL"}}}
		return vals
	}
	vals := restricted(`- name: web
  command: ["httpd", "-f", "-p", "8080", "-h", "/etc"]
  readiness: {tcpSocket: {port: 8080}, periodSeconds: 1}
`)
	vals["mocks"] = map[string]any{
		"metadata": map[string]any{"enabled": true, "image": "process-wrapper/metadata-mock:kube", "imagePullPolicy": "Never"},
		"metrics":  map[string]any{"enabled": true, "image": "process-wrapper/metrics-mock:kube", "imagePullPolicy": "Never"},
	}
	vals["wrapper"].(map[string]any)["preemption"] = map[string]any{"enabled": true}
	// the server's pod is admitted (it cannot become Ready: no etcd answers there)
	vals["sharedLock"] = map[string]any{"enabled": true, "image": "process-wrapper/shared-lock:kube", "imagePullPolicy": "Never", "etcdEndpoints": "http://127.0.0.1:1"}
	install(t, ns, vals)
	waitPod(t, ns, 2*time.Minute, "the workload to be Ready under restricted Pod Security", ready)
	waitfor.Condition(t, time.Minute, "the shared-lock server's pod to be admitted", func() bool {
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=shared-lock"})
		return err == nil && len(pods.Items) > 0
	})
	for _, mock := range []string{"metadata-mock", "metrics-mock"} {
		waitComponent(t, ns, mock, 2*time.Minute)
	}

	installRelease(t, ns, "privileged", restricted(`- name: other-user
  command: ["sleep", "100000"]
  user: "1000"
`))
	pod := waitReleasePod(t, ns, "privileged", 2*time.Minute, "the pod to run", func(p *corev1.Pod) bool { return appStatus(p).State.Running != nil })
	waitfor.Condition(t, 30*time.Second, "the start failure naming CAP_SETUID", func() bool {
		for _, l := range logs(t, ns, pod.Name, false) {
			if l["msg"] == "start failed" && l["process"] == "other-user" && strings.Contains(l["err"], "the wrapper lacks CAP_SETUID (user 1000, the wrapper runs as 65532)") {
				return true
			}
		}
		return false
	})
}

// waitComponent waits for the Ready pod of one of the chart's components.
func waitComponent(t *testing.T, ns, component string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	if !waitfor.Poll(timeout, func() bool {
		pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=" + component})
		if err != nil {
			return false
		}
		for i := range pods.Items {
			if ready(&pods.Items[i]) {
				pod = &pods.Items[i]
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no Ready pod of %s in %s within %v", component, ns, timeout)
	}
	return pod
}

// Preemption, played by metadata-mock in the cluster: kubelet's readiness
// probe, at the chart's 1 s x 1 under preemption handling, turns the pod
// NotReady within about a second, while its liveness holds (no restart);
// the preemption event reaches metrics-mock through its Service.
func TestPreemption(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	vals := values(`- name: web
  command: ["sleep", "100000"]
`, 12)
	vals["mocks"] = map[string]any{
		"metadata": map[string]any{"enabled": true, "image": "process-wrapper/metadata-mock:kube", "imagePullPolicy": "Never"},
		"metrics":  map[string]any{"enabled": true, "image": "process-wrapper/metrics-mock:kube", "imagePullPolicy": "Never"},
	}
	vals["wrapper"].(map[string]any)["preemption"] = map[string]any{"enabled": true}
	// the mock's Service named, as the chart names it by default
	vals["wrapper"].(map[string]any)["metricsServerAddress"] = "demo-metrics-mock:9999"
	// the mocks first, the workload once they serve: a wrapper that asked
	// before the mock's Service had its endpoint would back off (up to 30 s,
	// or wait out a request sent before kube-proxy had the Service), and
	// the time to NotReady would measure that instead
	vals["workload"].(map[string]any)["replicas"] = 0
	install(t, ns, vals)
	meta := waitComponent(t, ns, "metadata-mock", 2*time.Minute)
	events := waitComponent(t, ns, "metrics-mock", 2*time.Minute)
	vals["workload"].(map[string]any)["replicas"] = 1
	install(t, ns, vals)
	pod := waitPod(t, ns, 2*time.Minute, "the pod to be Ready", ready)
	// kube-proxy may still be a moment behind the mock's endpoint
	waitfor.Condition(t, 90*time.Second, "the wrapper to be watching metadata-mock", func() bool {
		l := logs(t, ns, pod.Name, false)
		return !has(l, "msg", "metadata server: retrying with backoff") || has(l, "msg", "metadata server answers again")
	})

	played := time.Now()
	resp, err := http.Post("http://"+meta.Status.PodIP+":8989/control/preempt", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("metadata-mock's preempt: %s", resp.Status)
	}
	notReady := waitPod(t, ns, 30*time.Second, "the pod to turn NotReady", func(p *corev1.Pod) bool { return p.Name == pod.Name && !ready(p) })
	for _, c := range notReady.Status.Conditions {
		if c.Type == corev1.PodReady {
			// the condition's time has a resolution of a second
			if d := c.LastTransitionTime.Time.Sub(played.Truncate(time.Second)); d > 3*time.Second {
				t.Errorf("NotReady %s after the preemption: the chart sizes kubelet's readiness probe at 1 s x 1", d)
			}
			t.Logf("preemption played at %s, the pod NotReady at %s", played.Format(time.TimeOnly+".000"), c.LastTransitionTime.Time.Format(time.TimeOnly))
		}
	}
	if n := appStatus(notReady).RestartCount; n != 0 {
		t.Errorf("kubelet restarted the container of a preempted pod: %s", describe(notReady))
	}
	waitfor.Condition(t, 30*time.Second, "the preemption event at metrics-mock", func() bool {
		resp, err := http.Get("http://" + events.Status.PodIP + ":9998/events?event=preemption")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var got []map[string]any
		if json.NewDecoder(resp.Body).Decode(&got) != nil {
			return false
		}
		for _, e := range got {
			if e["pod"] == pod.Name && e["namespace"] == ns {
				return true
			}
		}
		return false
	})
}

// A ConfigMap update to the wrapper's config reaches the mounted file
// (kubelet's atomic ..data swap); the time kubelet took is logged (the
// test cluster's kubelet syncs every 10 s; kubelet's default is 1 min).
func TestConfigMapUpdate(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	install(t, ns, values(`- name: web
  command: ["sleep", "100000"]
`, 12))
	pod := waitPod(t, ns, 2*time.Minute, "the pod to be Ready", ready)
	ctx := context.Background()
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, "demo-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["config.yaml"] = "- name: web\n  command: [\"sleep\", \"100001\"]\n"
	updated := time.Now()
	if _, err := client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitfor.Condition(t, 2*time.Minute, "the mounted config to change", func() bool {
		out, _, err := execIn(t, ns, pod.Name, "cat", "/etc/process-wrapper/config.yaml")
		return err == nil && strings.Contains(out, "100001")
	})
	t.Logf("kubelet took %s to swap the mounted ConfigMap", time.Since(updated).Round(100*time.Millisecond))
	if out, _, err := execIn(t, ns, pod.Name, "ls", "-a", "/etc/process-wrapper"); err != nil || !strings.Contains(out, "..data") {
		t.Errorf("the mount lacks kubelet's ..data link: %q %v", out, err)
	}
}

// The shared lock in the cluster, the server from the chart (its embedded
// etcd on a claim bound to a volume of the test's, a token Secret): the two pods of a
// Deployment run the locked step one after the other, never at once; and
// deleting the pod that holds a second lock hands it to the other pod
// within the lock's TTL.
func TestSharedLock(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "pw-kube-pv-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777) // the server runs as user 65532
	t.Cleanup(func() { os.RemoveAll(dir) })
	dirType := corev1.HostPathDirectory
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "lock-" + ns},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &dirType}},
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: "demo-shared-lock"},
		},
	}
	if _, err := client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})

	const ttl = 6
	vals := values(fmt.Sprintf(`- name: step
  command: ["sh", "-c", "echo enter; sleep 2; echo leave"]
  restartPolicy: Never
  sharedLock: {name: step, ttlSeconds: 10, holdUntil: exit}
- name: holder
  command: ["sh", "-c", "echo holding; exec sleep 100000"]
  sharedLock: {name: hold, ttlSeconds: %d, holdUntil: exit}
`, ttl), 12)
	vals["workload"].(map[string]any)["replicas"] = 2
	// the server's Service named, as the chart names it by default
	vals["wrapper"].(map[string]any)["sharedLockURL"] = "http://demo-shared-lock:8191"
	// every lock request carries the token of a Secret of the user's
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "lock-token"}, StringData: map[string]string{"token": randomHex(t)}}
	if _, err := client.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// a claim of 512Mi, bound to the 1Gi volume
	vals["sharedLock"] = map[string]any{"enabled": true, "image": "process-wrapper/shared-lock:kube", "imagePullPolicy": "Never", "tokenSecret": "lock-token",
		"persistence": map[string]any{"size": "512Mi"}}
	install(t, ns, vals)
	waitComponent(t, ns, "shared-lock", 2*time.Minute)

	list := func() []corev1.Pod {
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=workload"})
		if err != nil {
			t.Fatal(err)
		}
		return pods.Items
	}
	lockedOneAtATime(t, ns, "the locked step ran in both pods at once")

	// the holder of the second lock, and the other pod waiting for it
	holding := func(p corev1.Pod) bool {
		return p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && has(logs(t, ns, p.Name, false), "app", "holder", "msg", "holding")
	}
	var holder string
	for _, p := range list() {
		if holding(p) {
			holder = p.Name
		}
	}
	if holder == "" {
		t.Fatal("no pod holds the second lock")
	}
	deleted := time.Now()
	if err := client.CoreV1().Pods(ns).Delete(ctx, holder, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitfor.Condition(t, 2*ttl*time.Second, "another pod to take the lock", func() bool {
		for _, p := range list() {
			if p.Name != holder && holding(p) {
				return true
			}
		}
		return false
	})
	if d := time.Since(deleted); d > ttl*time.Second {
		t.Errorf("the lock was handed over %s after its holder's deletion, beyond its TTL of %d s", d, ttl)
	} else {
		t.Logf("the lock was handed over %s after its holder's deletion (TTL %d s)", d.Round(100*time.Millisecond), ttl)
	}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// The shared-lock server in two replicas on an etcd of the cluster's (a
// Deployment and a Service of the test's, Debian's etcd): both servers
// serve, and the two pods of the workload, whose requests the Service
// spreads over them, still run the locked step one at a time.
func TestSharedLockReplicas(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	ctx := context.Background()
	one := int32(1)
	labels := map[string]string{"app": "etcd"}
	etcd := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "etcd"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "etcd", Image: etcdImage, ImagePullPolicy: corev1.PullNever,
				Args: []string{"--name", "etcd", "--data-dir", "/data",
					"--listen-client-urls", "http://0.0.0.0:2379", "--advertise-client-urls", "http://etcd:2379"},
				Env:            []corev1.EnvVar{{Name: "ETCD_UNSUPPORTED_ARCH", Value: ""}},
				VolumeMounts:   []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(2379)}}, PeriodSeconds: 1},
			}}, Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}},
		}},
	}
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, etcd, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "etcd"}, Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 2379}}}}
	if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vals := values(`- name: step
  command: ["sh", "-c", "echo enter; sleep 2; echo leave"]
  restartPolicy: Never
  sharedLock: {name: step, ttlSeconds: 10, holdUntil: exit}
- name: idle
  command: ["sleep", "100000"]
`, 12)
	vals["workload"].(map[string]any)["replicas"] = 2
	vals["sharedLock"] = map[string]any{"enabled": true, "image": "process-wrapper/shared-lock:kube", "imagePullPolicy": "Never",
		"replicas": 2, "etcdEndpoints": "http://etcd:2379"}
	install(t, ns, vals)
	waitfor.Condition(t, 2*time.Minute, "both shared-lock servers to be Ready", func() bool {
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=shared-lock"})
		if err != nil {
			return false
		}
		n := 0
		for i := range pods.Items {
			if ready(&pods.Items[i]) {
				n++
			}
		}
		return n == 2
	})
	lockedOneAtATime(t, ns, "the locked step ran in both pods at once through two servers")
}

// lockedOneAtATime waits until the two workload pods in ns have each run
// the locked step (its "enter" and "leave" lines), and fails the test with
// msg when their runs overlapped.
func lockedOneAtATime(t *testing.T, ns, msg string) {
	t.Helper()
	type span struct{ enter, leave time.Time }
	spans := map[string]span{}
	waitfor.Condition(t, 2*time.Minute, "both pods to run the locked step", func() bool {
		pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=workload"})
		if err != nil {
			return false
		}
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodRunning {
				continue
			}
			var s span
			for _, l := range logs(t, ns, p.Name, false) {
				ts, err := time.Parse(time.RFC3339Nano, l["ts"])
				if err != nil {
					t.Fatalf("a line without a time: %v", l)
				}
				switch {
				case l["app"] == "step" && l["msg"] == "enter":
					s.enter = ts
				case l["app"] == "step" && l["msg"] == "leave":
					s.leave = ts
				}
			}
			if !s.enter.IsZero() && !s.leave.IsZero() {
				spans[p.Name] = s
			}
		}
		return len(spans) >= 2
	})
	var all []span
	for _, s := range spans {
		all = append(all, s)
	}
	if a, b := all[0], all[1]; a.enter.Before(b.leave) && b.enter.Before(a.leave) {
		t.Errorf("%s: %v", msg, spans)
	}
}
