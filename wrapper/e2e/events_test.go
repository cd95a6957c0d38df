package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/lifecycle"
	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// startMetricsMock runs metrics-mock on loopback and returns its UDP
// address and its HTTP base URL.
func startMetricsMock(t *testing.T) (udp, base string) {
	t.Helper()
	udp = fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t))
	base = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	startServer(t, exec.Command(eventsBin, "-udp", udp, "-http", strings.TrimPrefix(base, "http://")), base+"/events", 10*time.Second)
	return udp, base
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// recorded returns the events metrics-mock recorded that match query.
func recorded(t *testing.T, base, query string) []lifecycle.Event {
	t.Helper()
	resp, err := http.Get(base + "/events?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var evs []lifecycle.Event
	if err := json.NewDecoder(resp.Body).Decode(&evs); err != nil {
		t.Fatalf("/events: %v", err)
	}
	return evs
}

// Lifecycle events end to end: wrapper -> UDP on loopback -> metrics-mock,
// with the pod's identity and labels from the environment and the downward
// API labels file (minus its excluded keys).
func TestEvents(t *testing.T) {
	t.Parallel()
	udp, mock := startMetricsMock(t)
	labels := filepath.Join(t.TempDir(), "labels")
	os.WriteFile(labels, []byte("app=\"shop\"\npod-template-hash=\"6d4cf56db6\"\nteam=\"from-file\"\n"), 0o644)
	gate := filepath.Join(t.TempDir(), "ready")
	os.WriteFile(gate, nil, 0o644)
	w := start(t, config(t, fmt.Sprintf(`
- {name: crasher, entrypoint: CHILD, args: [exit, "3"], restartPolicy: OnFailure}
- name: web
  entrypoint: CHILD
  args: [sleep]
  readiness: {file: {path: %q}, periodSeconds: 1}
`, gate)), opts{env: []string{"METRICS_SERVER_ADDRESS=" + udp, "NODE_NAME=node-1", "POD_NAMESPACE=shop", "HOSTNAME=web-7f9c",
		`METRICS_JSON_EXTRA_LABELS={"cluster":"eu-1","team":"from-json"}`,
		"METRICS_EXTRA_LABELS_FILE_PATH=" + labels, "METRICS_EXTRA_LABELS_FILE_EXCLUDE=pod-template-hash, other"}})
	waitfor.Condition(t, 15*time.Second, "crasher's exits and restart recorded", func() bool {
		return len(recorded(t, mock, "event=process_exit&process=crasher")) >= 2 &&
			len(recorded(t, mock, "event=process_restart&process=crasher")) >= 1
	})
	ev := recorded(t, mock, "event=process_exit&process=crasher")[0]
	if ev.Code == nil || *ev.Code != 3 || ev.Pid == 0 || ev.Node != "node-1" || ev.Namespace != "shop" || ev.Pod != "web-7f9c" {
		t.Errorf("exit event: %+v", ev)
	}
	want := map[string]string{"app": "shop", "cluster": "eu-1", "team": "from-file"}
	if fmt.Sprint(ev.Labels) != fmt.Sprint(want) {
		t.Errorf("labels %v, want %v (the file wins over the JSON; pod-template-hash excluded)", ev.Labels, want)
	}
	if len(recorded(t, mock, "event=process_start&process=web")) != 1 {
		t.Error("no start event for web")
	}
	// the readiness probe passes, fails, then recovers
	w.waitLine(10*time.Second, "msg", "readiness probe passed", "process", "web")
	if evs := recorded(t, mock, "process=web&event=probe_recovery"); len(evs) != 0 {
		t.Errorf("a first pass is no recovery: %+v", evs)
	}
	os.Remove(gate)
	waitfor.Condition(t, 10*time.Second, "web's readiness failure", func() bool {
		return len(recorded(t, mock, "event=probe_failure&process=web")) == 1
	})
	os.WriteFile(gate, nil, 0o644)
	waitfor.Condition(t, 10*time.Second, "web's readiness recovery", func() bool {
		return len(recorded(t, mock, "event=probe_recovery&process=web")) == 1
	})
	if ev := recorded(t, mock, "event=probe_failure&process=web")[0]; ev.Probe != "readiness" || ev.Reason == "" {
		t.Errorf("probe failure event: %+v", ev)
	}
	w.signal(syscall.SIGTERM)
	w.wait(15 * time.Second)
	// the shutdown and the last exit go out before the wrapper exits
	if evs := recorded(t, mock, "event=shutdown"); len(evs) != 1 || evs[0].Reason != "SIGTERM" {
		t.Errorf("shutdown events: %+v", evs)
	}
	if evs := recorded(t, mock, "event=process_exit&process=web"); len(evs) != 1 {
		t.Errorf("web's exit events: %+v", evs)
	}
}

// A metrics server that is not there (nothing listens, or its name does
// not resolve) costs nothing but a counted failure: the processes run.
func TestEventsServerAbsent(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t)), "metrics-server.invalid:9999"} {
		w := start(t, config(t, "- {name: app, entrypoint: CHILD, args: [exit, \"0\"], restartPolicy: Never}\n"),
			opts{env: []string{"METRICS_SERVER_ADDRESS=" + addr}})
		if code := w.wait(10 * time.Second); code != 0 {
			t.Errorf("%s: exit code %d", addr, code)
		}
	}
	bad := exec.Command(wrapperBin, "-config", config(t, "- {name: a, entrypoint: CHILD}\n"))
	bad.Env = append(os.Environ(), "METRICS_SERVER_ADDRESS=127.0.0.1:9", "METRICS_JSON_EXTRA_LABELS={team: core}")
	if out, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(out), "METRICS_JSON_EXTRA_LABELS") {
		t.Errorf("bad METRICS_JSON_EXTRA_LABELS: %v %s", err, out)
	}
}

// -pyroscope-url: the wrapper profiles itself to the server, which
// receives ingest requests for the application process-wrapper (the last
// profile is sent at the shutdown).
func TestPyroscope(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var ingests []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		ingests = append(ingests, r.URL.Path+"?"+r.URL.RawQuery)
		mu.Unlock()
	}))
	defer srv.Close()
	w := start(t, config(t, "- {name: app, entrypoint: CHILD, args: [sleep]}\n"), opts{args: []string{"-pyroscope-url", srv.URL}})
	w.waitLine(10*time.Second, "msg", "profiling to pyroscope")
	w.signal(syscall.SIGTERM)
	w.wait(15 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	found := false
	for _, in := range ingests {
		if strings.HasPrefix(in, "/ingest?") && strings.Contains(in, "name=process-wrapper") {
			found = true
		}
	}
	if !found {
		t.Errorf("no ingest for process-wrapper among %q", ingests)
	}
}

// The lifecycle graph's events reach the metrics server: a spent restart
// budget, an edge that timed out, and an essential process's end.
func TestGraphEvents(t *testing.T) {
	t.Parallel()
	udp, mock := startMetricsMock(t)
	w := start(t, config(t, `
- {name: crashy, entrypoint: CHILD, args: [exit, "4"], maxRestarts: 0}
- {name: waiter, entrypoint: CHILD, args: [sleep], dependsOn: [{name: never, condition: ready, timeoutSeconds: 1}]}
- {name: never, entrypoint: CHILD, args: [sleep], readinessProbe: {file: {path: /nonexistent}, periodSeconds: 1}}
- {name: main, entrypoint: CHILD, args: [exit, "6"], restartPolicy: Never, essential: true, dependsOn: [{name: waiter, condition: completed}]}
`), opts{env: []string{"METRICS_SERVER_ADDRESS=" + udp}})
	if code := w.wait(15 * time.Second); code != 6 {
		t.Errorf("exit code %d, want 6 (main's)", code)
	}
	var budget, timeout, essential []lifecycle.Event
	waitfor.Condition(t, 5*time.Second, "the three events at the mock", func() bool {
		budget = recorded(t, mock, "event=restart_budget_spent&process=crashy")
		timeout = recorded(t, mock, "event=dependency_timeout&process=waiter")
		essential = recorded(t, mock, "event=essential_exit&process=main")
		return len(budget) == 1 && len(timeout) == 1 && len(essential) == 1
	})
	if e := budget[0]; e.Code == nil || *e.Code != 4 || !strings.Contains(e.Reason, "restart budget spent") {
		t.Errorf("restart_budget_spent: %+v", e)
	}
	if e := timeout[0]; e.Reason != "never (ready) not met within 1s" {
		t.Errorf("dependency_timeout: %+v", e)
	}
	if e := essential[0]; e.Code == nil || *e.Code != 6 {
		t.Errorf("essential_exit: %+v", e)
	}
}
