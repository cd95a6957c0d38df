package health

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/wrapper/probe"
	"github.com/process-wrapper/process-wrapper/wrapper/state"
)

func newServer(names ...string) (*Server, *state.Store) {
	st := state.New(names)
	return &Server{State: st, Beats: probe.NewBeats(), WaitDeadline: 300 * time.Millisecond,
		Log: logline.NewLogger(logline.NewOutput(io.Discard), "t")}, st
}

func get(t *testing.T, h http.Handler, target string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
	return rec.Code, rec.Body.String()
}

func TestReadinessAndLivenessBodies(t *testing.T) {
	s, st := newServer("web", "migrate", "broken")
	h := s.Handler()
	st.Update("web", func(p *state.Process) {
		p.Phase, p.Started, p.ProbeReady = state.Running, true, false
		p.ProbeReason = "readiness: GET http://127.0.0.1:8080/: status 500"
	})
	st.Update("migrate", func(p *state.Process) { p.Phase = state.Completed })
	st.Update("broken", func(p *state.Process) { p.Phase, p.Reason = state.Failed, "exited 3 under restartPolicy Never" })

	code, body := get(t, h, "/readiness")
	if code != 503 || body != "web: readiness: GET http://127.0.0.1:8080/: status 500\nbroken: failed: exited 3 under restartPolicy Never\n" {
		t.Errorf("readiness %d %q", code, body)
	}
	code, body = get(t, h, "/liveness")
	if code != 503 || body != "broken: failed: exited 3 under restartPolicy Never\n" {
		t.Errorf("liveness %d %q", code, body)
	}
	// cached until the next change, then recomputed
	st.Update("web", func(p *state.Process) { p.ProbeReady, p.ProbeReason = true, "" })
	st.Update("broken", func(p *state.Process) { p.Phase = state.Completed })
	if code, body = get(t, h, "/readiness"); code != 200 || body != "ok\n" {
		t.Errorf("readiness after recovery %d %q", code, body)
	}
	if code, _ = get(t, h, "/liveness"); code != 200 {
		t.Errorf("liveness %d", code)
	}
	st.Update("web", func(p *state.Process) { p.LiveFailed, p.ProbeReason = true, "liveness: connection refused" })
	if code, body = get(t, h, "/liveness"); code != 503 || body != "web: liveness: connection refused\n" {
		t.Errorf("liveness failure %d %q", code, body)
	}
	st.SetStopping()
	if code, body = get(t, h, "/readiness"); code != 503 || !strings.HasPrefix(body, "wrapper: shutting down\n") {
		t.Errorf("readiness while stopping %d %q", code, body)
	}
	// nothing else is served, and nothing changes state
	for _, path := range []string{"/", "/readiness/x", "/heartbeat"} {
		if code, _ := get(t, h, path); code != 404 {
			t.Errorf("%s: %d", path, code)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/readiness", nil))
	if rec.Code != 405 {
		t.Errorf("POST /readiness: %d", rec.Code)
	}
}

func TestWaitReleasedByChangeOrDeadline(t *testing.T) {
	s, st := newServer("web")
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	began := time.Now()
	resp, err := http.Get(srv.URL + "/readiness?wait")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || time.Since(began) < 300*time.Millisecond {
		t.Errorf("?wait answered %d after %v, want 503 at the 300ms deadline", resp.StatusCode, time.Since(began))
	}

	s.WaitDeadline = time.Minute
	got := make(chan int, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/readiness?wait")
		if err != nil {
			got <- -1
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	select {
	case c := <-got:
		t.Fatalf("answered %d before the state changed", c)
	case <-time.After(100 * time.Millisecond): // the waiting request must still be pending
	}
	st.Update("web", func(p *state.Process) { p.Phase, p.Started, p.ProbeReady = state.Running, true, true })
	select {
	case c := <-got:
		if c != 200 {
			t.Errorf("released with %d", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("?wait was not released by the change")
	}
}

func TestWaitEndsWhenTheClientLeaves(t *testing.T) {
	s, _ := newServer("web")
	s.WaitDeadline = time.Hour
	h := s.Handler()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/readiness?wait", nil).WithContext(ctx))
		close(done)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler kept waiting for a client that left")
	}
}

func TestHeartbeatFromLoopbackOnly(t *testing.T) {
	s, _ := newServer("worker")
	h := s.Handler()
	beat := func(remote, path string) int {
		req := httptest.NewRequest("POST", path, bytes.NewReader(nil))
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if c := beat("10.1.2.3:5555", "/heartbeat/worker"); c != 403 {
		t.Errorf("from the pod network: %d", c)
	}
	if _, ok := s.Beats.Last("worker"); ok {
		t.Error("a refused heartbeat was recorded")
	}
	if c := beat("127.0.0.1:5555", "/heartbeat/worker"); c != 204 {
		t.Errorf("from loopback: %d", c)
	}
	if c := beat("[::1]:5555", "/heartbeat/nobody"); c != 404 {
		t.Errorf("unknown process: %d", c)
	}
	if _, ok := s.Beats.Last("worker"); !ok {
		t.Error("the heartbeat was not recorded")
	}
}

func TestLocalURL(t *testing.T) {
	for in, want := range map[string]string{"0.0.0.0:8111": "http://127.0.0.1:8111", ":8111": "http://127.0.0.1:8111",
		"[::]:8111": "http://[::1]:8111", "10.0.0.5:9": "http://10.0.0.5:9"} {
		if got, err := LocalURL(in); err != nil || got != want {
			t.Errorf("LocalURL(%q) = %q, %v", in, got, err)
		}
	}
}

// BenchmarkReadiness: kubelet's polling of an unchanged state costs no
// snapshot; the baseline is a bare handler answering 200.
func BenchmarkReadiness(b *testing.B) {
	names := make([]string, 100)
	for i := range names {
		names[i] = "p" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	s, st := newServer(names...)
	for _, n := range names {
		st.Update(n, func(p *state.Process) { p.Phase, p.Started, p.ProbeReady = state.Running, true, true })
	}
	h := s.Handler()
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	for name, handler := range map[string]http.Handler{"readiness": h, "bare": bare} {
		b.Run(name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/readiness", nil)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, req)
			}
		})
	}
}

// Past MaxWaiters, a ?wait request is answered at once as without ?wait,
// and counted; a place freed by a waiter that ended serves the next one.
func TestWaitersAreCapped(t *testing.T) {
	s, _ := newServer("web")
	s.WaitDeadline, s.MaxWaiters = time.Hour, 3
	var refused atomic.Int64
	s.WaitRefused = func() { refused.Add(1) }
	h := s.Handler()
	ctx, cancel := context.WithCancel(context.Background())
	var held sync.WaitGroup
	for range 3 {
		held.Add(1)
		go func() {
			defer held.Done()
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/readiness?wait", nil).WithContext(ctx))
		}()
	}
	waitfor.Condition(t, 5*time.Second, "three waiters held", func() bool { return s.waiters.Load() == 3 })
	if code, body := get(t, h, "/liveness?wait"); code != 200 {
		t.Errorf("/liveness?wait %d %q: an answer that is already 200 needs no place", code, body)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readiness?wait", nil)) // would wait an hour if it were held
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "web: pending") || refused.Load() != 1 {
		t.Errorf("the fourth waiter: %d %q, %d refused", rec.Code, rec.Body.String(), refused.Load())
	}
	if rec.Header().Get("Connection") != "close" {
		t.Error("a refused waiter's connection is kept open")
	}
	cancel()
	held.Wait()
	if n := s.waiters.Load(); n != 0 {
		t.Errorf("%d places still taken after the waiters left", n)
	}
}

// The readiness file and the hooks wait on the store's summary: it is
// ready exactly when /readiness answers 200.
func TestSummaryReadyIsReadiness(t *testing.T) {
	names := []string{"a", "b", "c"}
	st := state.New(names)
	phases := []state.Phase{state.Pending, state.Running, state.Completed, state.Failed, state.Stopped}
	seen := map[bool]int{}
	for step := 0; step < 3000; step++ {
		n := names[step%3]
		switch k := (step * 7919) % 11; k {
		case 0:
			st.SetGate("post-start hook")
		case 1:
			st.SetGate("")
		case 2:
			if step > 2500 {
				st.SetPreempted()
			}
		case 3:
			if step > 2800 {
				st.SetStopping()
			}
		default:
			st.Update(n, func(p *state.Process) {
				p.Phase = phases[(step/3+k)%len(phases)]
				p.Started, p.ProbeReady, p.LiveFailed = k%2 == 0, k%3 != 0, k == 10
			})
		}
		sum, _ := st.Summarize()
		view, _ := st.Watch()
		if ok, body := Report(Readiness, view); ok != sum.Ready() {
			t.Fatalf("step %d: /readiness says %v (%q), the summary %v (%+v)", step, ok, body, sum.Ready(), sum)
		}
		seen[sum.Ready()]++
	}
	if seen[true] == 0 || seen[false] == 0 {
		t.Fatalf("the states tried were ready %d times, not ready %d times: both must be tried", seen[true], seen[false])
	}
}
