package e2e

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// apiServer is a test double of the Kubernetes API for one pod: list and
// watch with a metadata.name field selector, real k8s.io/api objects, a
// bearer token, and a way to break a watch mid-stream.
type apiServer struct {
	t      *testing.T
	srv    *httptest.Server
	saDir  string
	ns     string
	mu     sync.Mutex
	pod    corev1.Pod
	rv     int
	subs   map[chan []byte]bool
	lists  int
	watchs int
	deny   bool
}

func newAPIServer(t *testing.T, pod corev1.Pod) *apiServer {
	a := &apiServer{t: t, pod: pod, ns: pod.Namespace, subs: map[chan []byte]bool{}, rv: 100}
	a.pod.ResourceVersion = "100"
	a.srv = httptest.NewTLSServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	a.saDir = t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw})
	os.WriteFile(filepath.Join(a.saDir, "ca.crt"), ca, 0o644)
	os.WriteFile(filepath.Join(a.saDir, "token"), []byte("the-token\n"), 0o600)
	return a
}

func (a *apiServer) env() []string {
	u, _ := url.Parse(a.srv.URL)
	return []string{"HANDLE_TERMINATION=true", "KUBERNETES_SERVICE_HOST=" + u.Hostname(), "KUBERNETES_SERVICE_PORT=" + u.Port(),
		"SERVICE_ACCOUNT_DIR=" + a.saDir, "POD_NAMESPACE=" + a.ns, "POD_NAME=" + a.pod.Name, "CONTAINER_NAME=sidecars"}
}

func (a *apiServer) status(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: "Failure",
		Code: int32(code), Reason: metav1.StatusReason(reason), Message: msg})
}

func (a *apiServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer the-token" {
		a.status(w, 401, "Unauthorized", "Unauthorized")
		return
	}
	a.mu.Lock()
	deny := a.deny
	a.mu.Unlock()
	if deny {
		a.status(w, 403, "Forbidden", `pods is forbidden: User "system:serviceaccount:jobs:default" cannot list resource "pods" in API group "" in the namespace "jobs"`)
		return
	}
	if r.URL.Path != "/api/v1/namespaces/"+a.ns+"/pods" || !strings.HasPrefix(r.URL.Query().Get("fieldSelector"), "metadata.name=") {
		a.status(w, 400, "BadRequest", "unexpected request "+r.URL.String())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Query().Get("watch") == "" {
		a.mu.Lock()
		a.lists++
		list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"},
			ListMeta: metav1.ListMeta{ResourceVersion: fmt.Sprint(a.rv)}, Items: []corev1.Pod{}}
		if r.URL.Query().Get("fieldSelector") == "metadata.name="+a.pod.Name {
			list.Items = append(list.Items, a.pod)
		}
		a.mu.Unlock()
		json.NewEncoder(w).Encode(list)
		return
	}
	ch := make(chan []byte, 16)
	a.mu.Lock()
	a.watchs++
	a.subs[ch] = true
	a.mu.Unlock()
	defer func() { a.mu.Lock(); delete(a.subs, ch); a.mu.Unlock() }()
	w.WriteHeader(200)
	w.(http.Flusher).Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case b, ok := <-ch:
			if !ok {
				return
			}
			w.Write(b)
			w.(http.Flusher).Flush()
		}
	}
}

// update changes the pod and sends a MODIFIED event to every watch.
func (a *apiServer) update(f func(p *corev1.Pod)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(&a.pod)
	a.rv++
	a.pod.ResourceVersion = fmt.Sprint(a.rv)
	raw, _ := json.Marshal(a.pod)
	b, _ := json.Marshal(metav1.WatchEvent{Type: "MODIFIED", Object: runtime.RawExtension{Raw: raw}})
	for ch := range a.subs {
		ch <- append(b, '\n')
	}
}

// breakWatches sends half an event to every watch and ends it.
func (a *apiServer) breakWatches() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ch := range a.subs {
		ch <- []byte(`{"type":"MODIFIED","object":{"kind":"Pod","metadata":{"na`)
		close(ch)
		delete(a.subs, ch)
	}
}

func (a *apiServer) counts() (lists, watches, subs int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lists, a.watchs, len(a.subs)
}

func jobPod(policy corev1.RestartPolicy) corev1.Pod {
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
	return corev1.Pod{
		TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "job-x7k2p", Namespace: "jobs", UID: "4b1c"},
		Spec: corev1.PodSpec{RestartPolicy: policy, Containers: []corev1.Container{
			{Name: "main", Image: "app"}, {Name: "sidecars", Image: "app-with-wrapper"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{
			{Name: "main", State: running, Ready: true}, {Name: "sidecars", State: running, Ready: true}}},
	}
}

func terminated(code int32) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Completed", FinishedAt: metav1.Now()}}
}

// HANDLE_TERMINATION: the wrapper runs its sidecars while the Job's main
// container runs (through a broken watch and a failure that kubelet will
// restart under OnFailure), and drains and exits 0 within a second of the
// main container's end for good, never before.
func TestTermination(t *testing.T) {
	t.Parallel()
	api := newAPIServer(t, jobPod(corev1.RestartPolicyOnFailure))
	w := start(t, config(t, "- {name: proxy, entrypoint: CHILD, args: [trap, \"143\"]}\n"), opts{env: api.env()})
	w.waitLine(10*time.Second, "msg", "following the pod's containers: the wrapper ends when they all have", "containers", "main")
	waitfor.Condition(t, 10*time.Second, "a watch open", func() bool { _, _, subs := api.counts(); return subs == 1 })
	api.update(func(p *corev1.Pod) { p.Status.ContainerStatuses[1].Ready = false }) // nothing about main
	api.breakWatches()
	waitfor.Condition(t, 10*time.Second, "the watch open again", func() bool { l, _, subs := api.counts(); return subs == 1 && l >= 2 })
	// a failure under OnFailure: kubelet restarts main, the Job goes on
	api.update(func(p *corev1.Pod) { p.Status.ContainerStatuses[0].State = terminated(1) })
	api.update(func(p *corev1.Pod) {
		p.Status.ContainerStatuses[0].State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
		p.Status.ContainerStatuses[0].RestartCount = 1
	})
	select {
	case <-w.done:
		t.Fatalf("the wrapper exited (%d) while the main container runs", w.code)
	case <-time.After(1500 * time.Millisecond): // the time the wrapper is given to exit wrongly
	}
	ended := time.Now()
	api.update(func(p *corev1.Pod) { p.Status.ContainerStatuses[0].State = terminated(0) })
	if code := w.wait(10 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if took := time.Since(ended); took > time.Second {
		t.Errorf("the wrapper took %v to end after the main container", took)
	}
	w.waitLine(time.Second, "msg", "sending stop signal", "process", "proxy")
	if len(w.find("msg", "pod watch: retrying with backoff")) != 1 {
		t.Errorf("the broken watch was not logged once")
	}
}

// Under restartPolicy Never a failed main container is final too; and
// what the wrapper cannot do is an error at start, before any process.
func TestTerminationStartErrors(t *testing.T) {
	t.Parallel()
	api := newAPIServer(t, jobPod(corev1.RestartPolicyNever))
	w := start(t, config(t, "- {name: proxy, entrypoint: CHILD, args: [sleep]}\n"), opts{env: api.env()})
	waitfor.Condition(t, 10*time.Second, "a watch open", func() bool { _, _, subs := api.counts(); return subs == 1 })
	api.update(func(p *corev1.Pod) { p.Status.ContainerStatuses[0].State = terminated(2) })
	if code := w.wait(10 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}

	cases := []struct {
		name string
		env  []string
		want string
	}{
		{"no namespace", []string{"POD_NAMESPACE="}, "HANDLE_TERMINATION=true needs POD_NAMESPACE"},
		{"no own container", []string{"CONTAINER_NAME="}, "CONTAINER_NAME"},
		{"own container unknown", []string{"CONTAINER_NAME=wrapper"}, `CONTAINER_NAME "wrapper" is not a container of pod jobs/job-x7k2p (it has main, sidecars)`},
		{"follow unknown", []string{"TERMINATION_FOLLOW_CONTAINERS=main,mian"}, `TERMINATION_FOLLOW_CONTAINERS names "mian"`},
		{"no credentials", []string{"SERVICE_ACCOUNT_DIR=/nonexistent"}, "needs the service account's credentials"},
		{"wrong pod", []string{"POD_NAME=other", "HOSTNAME=other"}, "pod jobs/other not found"},
		{"not a bool", []string{"HANDLE_TERMINATION=sure"}, "HANDLE_TERMINATION: want true or false"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := start(t, config(t, "- {name: proxy, entrypoint: CHILD, args: [print, started]}\n"), opts{env: append(api.env(), c.env...)})
			if code := w.wait(10 * time.Second); code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if !strings.Contains(w.dump(), c.want) {
				t.Errorf("output lacks %q:\n%s", c.want, w.dump())
			}
			if len(w.find("app", "proxy")) != 0 {
				t.Error("the process started")
			}
		})
	}
	t.Run("rbac denied", func(t *testing.T) {
		api.mu.Lock()
		api.deny = true
		api.mu.Unlock()
		w := start(t, config(t, "- {name: proxy, entrypoint: CHILD, args: [print, started]}\n"), opts{env: api.env()})
		if code := w.wait(10 * time.Second); code != 2 || !strings.Contains(w.dump(), "RBAC: the pod's service account needs get, list and watch on pods in namespace jobs") {
			t.Errorf("exit code %d, output:\n%s", code, w.dump())
		}
	})
}
