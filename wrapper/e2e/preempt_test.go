package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// A preemption played on metadata-mock: /readiness turns 503 (preempted),
// /liveness stays 200, and envoy's inbound listeners are drained.
func TestPreemption(t *testing.T) {
	t.Parallel()
	mockAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startServer(t, exec.Command(mockBin, "-listen", mockAddr), "http://"+mockAddr+"/control/state", 10*time.Second)
	var mu sync.Mutex
	var drains []string
	envoy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		drains = append(drains, r.Method+" "+r.URL.RequestURI())
		mu.Unlock()
	}))
	defer envoy.Close()
	udp, events := startMetricsMock(t)
	w := start(t, config(t, "- {name: app, entrypoint: CHILD, args: [sleep]}\n"), opts{
		args: []string{"-envoy-drain"},
		env: []string{"HANDLE_PREEMPTION=true", "METADATA_URL=http://" + mockAddr + "/computeMetadata/v1/instance/preempted",
			"METRICS_SERVER_ADDRESS=" + udp, "HOSTNAME=web-1",
			"ENVOY_DRAIN_URL=" + envoy.URL + "/drain_listeners?inboundonly&graceful"}})
	base := w.url()
	waitfor.Condition(t, 10*time.Second, "ready", func() bool { c, _ := httpGet(t, base+"/readiness"); return c == 200 })
	resp, err := http.Post("http://"+mockAddr+"/control/preempt", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitfor.Condition(t, 15*time.Second, "readiness 503 preempted", func() bool {
		c, body := httpGet(t, base+"/readiness")
		return c == 503 && strings.Contains(body, "wrapper: preempted")
	})
	if c, _ := httpGet(t, base+"/liveness"); c != 200 {
		t.Errorf("liveness %d after the preemption", c)
	}
	waitfor.Condition(t, 5*time.Second, "the envoy drain", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(drains) == 1 && drains[0] == "POST /drain_listeners?inboundonly&graceful"
	})
	w.waitLine(time.Second, "msg", "the node is preempted")
	waitfor.Condition(t, 5*time.Second, "the preemption event", func() bool {
		evs := recorded(t, events, "event=preemption")
		return len(evs) == 1 && evs[0].Pod == "web-1"
	})
	w.signal(syscall.SIGTERM)
	w.wait(10 * time.Second)
}

// A metadata server that is down or answers nonsense: no crash, no busy
// loop, and the wrapper follows it again when it comes back.
func TestMetadataServerTrouble(t *testing.T) {
	t.Parallel()
	var requests, mode atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		switch mode.Load() {
		case 0:
			w.Write([]byte("<html>not a metadata server</html>"))
		case 1:
			w.WriteHeader(500)
		default:
			w.Header().Set("ETag", "e1")
			w.Write([]byte("FALSE"))
		}
	}))
	defer srv.Close()
	w := start(t, config(t, "- {name: app, entrypoint: CHILD, args: [sleep]}\n"), opts{
		env: []string{"HANDLE_PREEMPTION=true", "METADATA_URL=" + srv.URL + "/computeMetadata/v1/instance/preempted"}})
	base := w.url()
	began := time.Now()
	waitfor.Condition(t, 10*time.Second, "a few tries", func() bool { return requests.Load() >= 2 })
	mode.Store(1)
	waitfor.Condition(t, 15*time.Second, "more tries", func() bool { return requests.Load() >= 3 })
	if n, took := requests.Load(), time.Since(began); float64(n) > took.Seconds()+3 {
		t.Errorf("%d requests in %v: a busy loop", n, took)
	}
	// one line per kind of trouble, not one per try
	waitfor.Condition(t, 10*time.Second, "the second kind of trouble logged", func() bool {
		return len(w.find("msg", "metadata server: retrying with backoff")) == 2
	})
	waitfor.Condition(t, 15*time.Second, "another try of the same trouble", func() bool { return requests.Load() >= 4 })
	if got := len(w.find("msg", "metadata server: retrying with backoff")); got != 2 {
		t.Errorf("%d retry lines for two kinds of trouble, want one each", got)
	}
	mode.Store(2)
	w.waitLine(30*time.Second, "msg", "metadata server answers again")
	if c, _ := httpGet(t, base+"/readiness"); c != 200 {
		t.Errorf("readiness %d: trouble with the metadata server is not a preemption", c)
	}
	if bad := exec.Command(wrapperBin, "-config", config(t, "- {name: a, entrypoint: CHILD}\n")); true {
		bad.Env = append(os.Environ(), "HANDLE_PREEMPTION=yes please")
		out, err := bad.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "HANDLE_PREEMPTION") {
			t.Errorf("bad HANDLE_PREEMPTION: %v %s", err, out)
		}
	}
	w.signal(syscall.SIGTERM)
	w.wait(10 * time.Second)
}
