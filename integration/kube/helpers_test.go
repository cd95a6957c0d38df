package kube

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/go-logfmt/logfmt"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	kscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/remotecommand"
	"sigs.k8s.io/yaml"

	"github.com/process-wrapper/process-wrapper/integration/chartrender"
	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

const chartDir = "../../charts/process-wrapper"

// namespace creates a namespace of the test's own, deleted at its end.
func namespace(t *testing.T) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	ctx := context.Background()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	})
	return name
}

// install renders the chart as release demo in ns, with vals over the
// chart's values, and applies every manifest server-side with strict field
// validation (the API server refuses an unknown field instead of warning).
func install(t *testing.T, ns string, vals map[string]any) { installRelease(t, ns, "demo", vals) }

func installRelease(t *testing.T, ns, release string, vals map[string]any) {
	t.Helper()
	out, err := chartrender.Render(chartDir, release, ns, vals)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := kc.Config()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(client.Discovery()))
	ctx := context.Background()
	for _, doc := range chartrender.Manifests(out) {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("manifest: %v\n%s", err, doc)
		}
		var obj unstructured.Unstructured
		if err := obj.UnmarshalJSON(js); err != nil {
			t.Fatalf("manifest: %v\n%s", err, doc)
		}
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: %v", gvk, err)
		}
		var res dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			res = dyn.Resource(m.Resource).Namespace(ns)
		}
		force := true
		if _, err := res.Patch(ctx, obj.GetName(), types.ApplyPatchType, js, metav1.PatchOptions{
			FieldManager: "process-wrapper-test", Force: &force, FieldValidation: "Strict",
		}); err != nil {
			t.Fatalf("apply %s %s: %v", gvk.Kind, obj.GetName(), err)
		}
	}
}

// values are the chart values every test starts from: the images of the
// run, never pulled, the app image an unrelated static busybox.
func values(config string, grace int) map[string]any {
	return map[string]any{
		"workload": map[string]any{"terminationGracePeriodSeconds": grace},
		"app":      map[string]any{"image": appImage, "imagePullPolicy": "Never"},
		"wrapper": map[string]any{
			"image": wrapperImage, "imagePullPolicy": "Never", "config": config,
			// a shorter period than the chart's 10 s: the chart derives the
			// failureThreshold from it, the window stays what the rule says
			"probes": map[string]any{"liveness": map[string]any{"periodSeconds": 2}},
		},
	}
}

// waitPod waits until the workload's pod in ns satisfies cond, and returns it.
func waitPod(t *testing.T, ns string, timeout time.Duration, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	return waitReleasePod(t, ns, "demo", timeout, what, cond)
}

func waitReleasePod(t *testing.T, ns, release string, timeout time.Duration, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var found, lastPod *corev1.Pod
	var last string
	if !waitfor.Poll(timeout, func() bool {
		pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=workload,app.kubernetes.io/instance=" + release})
		if err != nil {
			last = err.Error()
			return false
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			last, lastPod = describe(p), p
			if cond(p) {
				found = p
				return true
			}
		}
		return false
	}) {
		var tail string
		if lastPod != nil {
			n := int64(20)
			for _, previous := range []bool{false, true} { // a container that crashed has its lines in its last run
				b, _ := client.CoreV1().Pods(ns).GetLogs(lastPod.Name, &corev1.PodLogOptions{Container: "app", TailLines: &n, Previous: previous}).DoRaw(context.Background())
				tail += string(b)
			}
		}
		t.Fatalf("timed out after %v waiting for %s; last seen: %s; its last lines:\n%s", timeout, what, last, tail)
	}
	return found
}

func describe(p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s phase=%s", p.Name, p.Status.Phase)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, " %s=%s", c.Type, c.Status)
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		fmt.Fprintf(&b, " [%s ready=%v restarts=%d", cs.Name, cs.Ready, cs.RestartCount)
		switch s := cs.State; {
		case s.Waiting != nil:
			fmt.Fprintf(&b, " waiting %s: %s", s.Waiting.Reason, s.Waiting.Message)
		case s.Running != nil:
			b.WriteString(" running")
		case s.Terminated != nil:
			fmt.Fprintf(&b, " terminated %d %s", s.Terminated.ExitCode, s.Terminated.Reason)
		}
		b.WriteString("]")
	}
	return b.String()
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func appStatus(p *corev1.Pod) corev1.ContainerStatus {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == "app" {
			return cs
		}
	}
	return corev1.ContainerStatus{}
}

// logs is what kubectl logs shows of the app container, each line decoded
// as logfmt (previous: of its last run before a restart).
func logs(t *testing.T, ns, pod string, previous bool) []map[string]string {
	t.Helper()
	return logsOf(t, ns, pod, "app", previous)
}

func logsOf(t *testing.T, ns, pod, container string, previous bool) []map[string]string {
	t.Helper()
	b, err := client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Previous: previous}).DoRaw(context.Background())
	if err != nil {
		t.Fatalf("logs of %s: %v", pod, err)
	}
	return parseLogs(t, pod, b)
}

// following streams a container's log from its start until its end: the
// log of a container that kubelet removes soon after its end (a deleted
// pod's) is read while it runs. The function returned waits for the end.
func following(t *testing.T, ns, pod, container string) func() []map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	rc, err := client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true}).Stream(ctx)
	if err != nil {
		cancel()
		t.Fatalf("following the logs of %s: %v", pod, err)
	}
	read := make(chan []byte, 1)
	// owned by the function returned, which waits for it
	go func() {
		b, _ := io.ReadAll(rc)
		rc.Close()
		read <- b
	}()
	return func() []map[string]string {
		t.Helper()
		defer cancel()
		select {
		case b := <-read:
			return parseLogs(t, pod, b)
		case <-time.After(30 * time.Second):
			cancel() // the stream did not end with the container
			return parseLogs(t, pod, <-read)
		}
	}
}

func parseLogs(t *testing.T, pod string, b []byte) []map[string]string {
	t.Helper()
	var lines []map[string]string
	d := logfmt.NewDecoder(bytes.NewReader(b))
	for d.ScanRecord() {
		kv := map[string]string{}
		for d.ScanKeyval() {
			kv[string(d.Key())] = string(d.Value())
		}
		lines = append(lines, kv)
	}
	if err := d.Err(); err != nil {
		t.Fatalf("logs of %s are not logfmt: %v\n%s", pod, err, b)
	}
	return lines
}

// webProcess is a process of the app image that serves HTTP on :8080 and
// is ready once it does.
const webProcess = `- name: web
  command: ["sh", "-c", "mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"]
  readiness: {http: {port: 8080, path: /index.html}, periodSeconds: 1}
`

// has tells whether one of lines holds every key=value pair of kv.
func has(lines []map[string]string, kv ...string) bool {
	for _, l := range lines {
		match := true
		for i := 0; i+1 < len(kv); i += 2 {
			if l[kv[i]] != kv[i+1] {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// execIn runs argv in the app container of pod, as kubectl exec does.
func execIn(t *testing.T, ns, pod string, argv ...string) (string, string, error) {
	t.Helper()
	return execInContainer(t, ns, pod, "app", argv...)
}

func execInContainer(t *testing.T, ns, pod, container string, argv ...string) (string, string, error) {
	t.Helper()
	cfg, err := kc.Config()
	if err != nil {
		t.Fatal(err)
	}
	req := client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: argv, Stdout: true, Stderr: true}, kscheme.ParameterCodec)
	ex, err := remotecommand.NewWebSocketExecutor(cfg, "GET", req.URL().String())
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
	return stdout.String(), stderr.String(), err
}

// finalize adds a finalizer to pod, so that its final status can be read
// after its deletion; the test's end removes it.
func finalize(t *testing.T, ns, pod string) {
	t.Helper()
	ctx := context.Background()
	patch := []byte(`{"metadata":{"finalizers":["process-wrapper.test/keep"]}}`)
	if _, err := client.CoreV1().Pods(ns).Patch(ctx, pod, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, err := client.CoreV1().Pods(ns).Patch(ctx, pod, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("remove the finalizer of %s: %v", pod, err)
		}
	})
}

// deleteAndWait deletes pod, kept by a test finalizer, and waits until the
// container has terminated; it returns when the deletion was asked for and
// the pod then.
func deleteAndWait(t *testing.T, ns string, pod *corev1.Pod, container string) (time.Time, *corev1.Pod, []map[string]string) {
	t.Helper()
	finalize(t, ns, pod.Name)
	logs := following(t, ns, pod.Name, container)
	deleted := time.Now()
	if err := client.CoreV1().Pods(ns).Delete(context.Background(), pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitPod(t, ns, time.Minute, "the "+container+" container to terminate", func(p *corev1.Pod) bool {
		return p.Name == pod.Name && containerStatus(p, container).State.Terminated != nil
	})
	return deleted, p, logs()
}
