package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/freeport"
	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// freePort is a port for a wrapper whose address the test must know before
// the wrapper writes anything (see freeport).
func freePort(t *testing.T) int { return freeport.Loopback(t) }

// readinessFile returns the -readiness-file the harness gave the wrapper.
func readinessFile(w *wrapper) string {
	for i, a := range w.cmd.Args {
		if a == "-readiness-file" {
			return w.cmd.Args[i+1]
		}
	}
	return ""
}

// The whole readiness story through the real binary: 503 naming the
// process and why, ?wait released by the change, the readiness file written
// once and kept when readiness is lost, 503 and the file removed at
// shutdown before the processes are signalled.
func TestReadinessThroughTheBinary(t *testing.T) {
	t.Parallel()
	gate := filepath.Join(t.TempDir(), "gate")
	port := freePort(t)
	w := start(t, config(t, fmt.Sprintf(`
- name: web
  entrypoint: CHILD
  args: [serve, "127.0.0.1:%d"]
  readiness: {http: {port: %d, path: /ready}, periodSeconds: 1}
- name: gated
  entrypoint: CHILD
  args: [trap, "0"]
  readinessProbe: {exec: {command: [test, -f, %q]}, periodSeconds: 1, failureThreshold: 1}
- name: once
  entrypoint: CHILD
  args: [print, "done"]
  restartPolicy: Never`, port, port, gate)), opts{args: []string{"-wait-deadline", "30s"}})
	base := w.url()
	code, body := httpGet(t, base+"/readiness")
	if code != 503 || !strings.Contains(body, "gated: ") {
		t.Errorf("readiness %d %q", code, body)
	}
	if code, body := httpGet(t, base+"/liveness"); code != 200 || body != "ok\n" {
		t.Errorf("liveness %d %q", code, body)
	}
	waitfor.Condition(t, 10*time.Second, "web to become ready", func() bool {
		_, body := httpGet(t, base+"/readiness")
		return !strings.Contains(body, "web:")
	})
	if _, err := os.Stat(readinessFile(w)); err == nil {
		t.Fatal("readiness file written before every process was ready")
	}
	released := make(chan int, 1)
	go func() {
		resp, err := http.Get(base + "/readiness?wait")
		if err != nil {
			released <- -1
			return
		}
		resp.Body.Close()
		released <- resp.StatusCode
	}()
	os.WriteFile(gate, nil, 0o644)
	select {
	case c := <-released:
		if c != 200 {
			t.Fatalf("?wait answered %d", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("?wait not released when every process became ready")
	}
	waitfor.Condition(t, 5*time.Second, "the readiness file", func() bool {
		_, err := os.Stat(readinessFile(w))
		return err == nil
	})
	// readiness lost: 503 again, but the "started" marker stays
	os.Remove(gate)
	w.waitLine(10*time.Second, "msg", "readiness probe failed", "process", "gated")
	if code, _ := httpGet(t, base+"/readiness"); code != 503 {
		t.Errorf("readiness %d after the gate closed", code)
	}
	if _, err := os.Stat(readinessFile(w)); err != nil {
		t.Error("the readiness file was removed when readiness was lost")
	}
	w.signal(syscall.SIGTERM)
	if code := w.wait(10 * time.Second); code != 143 && code != 0 {
		t.Errorf("exit code %d", code)
	}
	if _, err := os.Stat(readinessFile(w)); err == nil {
		t.Error("the readiness file is still there after shutdown")
	}
}

func TestShutdownTurnsReadinessOffFirst(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: stubborn, entrypoint: CHILD, args: [ignore-term]}`), opts{args: []string{"-graceful-shutdown-deadline", "3s"}})
	base := w.url()
	waitfor.Condition(t, 5*time.Second, "ready", func() bool { c, _ := httpGet(t, base+"/readiness"); return c == 200 })
	waitfor.Condition(t, 5*time.Second, "the readiness file", func() bool { _, err := os.Stat(readinessFile(w)); return err == nil })
	w.waitLine(5*time.Second, "app", "stubborn", "msg", "ignoring SIGTERM") // its handler is in place
	w.signal(syscall.SIGTERM)
	w.waitLine(5*time.Second, "msg", "sending stop signal", "process", "stubborn")
	code, body := httpGet(t, base+"/readiness")
	if code != 503 || !strings.HasPrefix(body, "wrapper: shutting down") {
		t.Errorf("readiness during the drain: %d %q", code, body)
	}
	if _, err := os.Stat(readinessFile(w)); err == nil {
		t.Error("the readiness file is still there while draining")
	}
	// the file went before the stop signal: the "readiness file" removal
	// happens in the shutdown line's step, before "sending stop signal"
	lines := w.lines()
	var order []string
	for _, l := range lines {
		if l["msg"] == "shutting down" || l["msg"] == "sending stop signal" {
			order = append(order, l["msg"])
		}
	}
	if strings.Join(order, ",") != "shutting down,sending stop signal" {
		t.Errorf("order %v", order)
	}
	if code, _ := httpGet(t, base+"/liveness"); code != 200 {
		t.Errorf("liveness during the drain: %d", code)
	}
	w.wait(10 * time.Second)
}

// A liveness failure restarts that one process; the others keep running.
func TestLivenessRestartsOneProcess(t *testing.T) {
	t.Parallel()
	alive := filepath.Join(t.TempDir(), "alive")
	os.WriteFile(alive, nil, 0o644)
	w := start(t, config(t, fmt.Sprintf(`
- name: sick
  entrypoint: CHILD
  args: [trap, "0"]
  liveness: {file: {path: %q}, periodSeconds: 1, failureThreshold: 2}
- name: healthy
  entrypoint: CHILD
  args: [sleep]`, alive)), opts{})
	base := w.url()
	w.waitLine(5*time.Second, "app", "sick", "msg", "trapping signals")
	os.Remove(alive)
	l := w.waitLine(10*time.Second, "msg", "liveness probe failed: restarting process", "process", "sick")
	if !strings.Contains(l["reason"], "no such file") {
		t.Errorf("reason %q", l["reason"])
	}
	w.waitLine(5*time.Second, "app", "sick", "msg", "got SIGTERM")
	os.WriteFile(alive, nil, 0o644)
	waitfor.Condition(t, 10*time.Second, "sick started again", func() bool {
		return len(w.find("msg", "process started", "process", "sick")) == 2
	})
	waitfor.Condition(t, 5*time.Second, "liveness back to 200", func() bool { c, _ := httpGet(t, base+"/liveness"); return c == 200 })
	if n := len(w.find("msg", "process started", "process", "healthy")); n != 1 {
		t.Errorf("healthy started %d times", n)
	}
	w.signal(syscall.SIGTERM)
	w.wait(10 * time.Second)
}

// A startup probe holds readiness and liveness back, and one that fails for
// good restarts the process.
func TestStartupProbe(t *testing.T) {
	t.Parallel()
	started := filepath.Join(t.TempDir(), "started")
	w := start(t, config(t, fmt.Sprintf(`
- name: slow
  entrypoint: CHILD
  args: [sleep]
  startupProbe: {exec: {command: [test, -f, %q]}, periodSeconds: 1, failureThreshold: 2}
  livenessProbe: {exec: {command: ["false"]}, periodSeconds: 1, failureThreshold: 1}`, started)), opts{})
	base := w.url()
	// once running (it may still be starting at the first request), not
	// ready until its startup probe passes
	waitfor.Condition(t, 5*time.Second, "readiness 503: startup probe has not passed", func() bool {
		code, body := httpGet(t, base+"/readiness")
		return code == 503 && strings.Contains(body, "slow: startup probe has not passed")
	})
	// failureThreshold 2 x 1s: restarted, and the failing liveness probe
	// never ran, since startup never passed
	w.waitLine(10*time.Second, "msg", "startup probe failed: restarting process", "process", "slow")
	if len(w.find("msg", "liveness probe failed: restarting process")) != 0 {
		t.Error("liveness ran before startup passed")
	}
	w.signal(syscall.SIGTERM)
	w.wait(10 * time.Second)
}

// -wait exits 0 as soon as the wrapper on this host is ready, and 1 with
// the reason at its deadline.
func TestWaitClient(t *testing.T) {
	t.Parallel()
	gate := filepath.Join(t.TempDir(), "gate")
	w := start(t, config(t, fmt.Sprintf(`
- name: gated
  entrypoint: CHILD
  args: [sleep]
  readiness: {file: {path: %q}, periodSeconds: 1}`, gate)), opts{})
	addr := strings.TrimPrefix(w.url(), "http://")

	out, err := exec.Command(wrapperBin, "-wait", "-http-address", addr, "-wait-deadline", "500ms").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "gated: readiness") {
		t.Errorf("-wait before ready: %v %s", err, out)
	}
	client := exec.Command(wrapperBin, "-wait", "-http-address", addr, "-wait-deadline", "30s")
	done := make(chan error, 1)
	var buf strings.Builder
	client.Stdout = &buf
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- client.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("-wait returned before the wrapper was ready: %v %s", err, buf.String())
	case <-time.After(300 * time.Millisecond): // it must still be waiting
	}
	os.WriteFile(gate, nil, 0o644)
	select {
	case err := <-done:
		if err != nil || !strings.Contains(buf.String(), `msg="the wrapper is ready"`) {
			t.Errorf("-wait: %v %s", err, buf.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("-wait did not return once ready")
	}
	// a wrapper that is not there yet: waits, then fails at the deadline
	out, err = exec.Command(wrapperBin, "-wait", "-http-address", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "-wait-deadline", "300ms").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "connection refused") {
		t.Errorf("-wait without a wrapper: %v %s", err, out)
	}
	w.signal(syscall.SIGTERM)
	w.wait(10 * time.Second)
}

func TestHeartbeatOverHTTP(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- name: beating
  entrypoint: CHILD
  args: [sleep]
  liveness: {heartBeat: {maxAge: 2s}, periodSeconds: 1, failureThreshold: 1}`), opts{})
	base := w.url()
	beat := func() int {
		resp, err := http.Post(base+"/heartbeat/beating", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// beats keep it live well past maxAge
	deadline := time.Now().Add(3500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if c := beat(); c != 204 {
			t.Fatalf("heartbeat answered %d", c)
		}
		time.Sleep(200 * time.Millisecond) // the beat interval of this fake process
	}
	if len(w.find("msg", "liveness probe failed: restarting process")) != 0 {
		t.Fatal("restarted although it beat")
	}
	// silence: restarted
	w.waitLine(10*time.Second, "msg", "liveness probe failed: restarting process", "process", "beating")
	w.signal(syscall.SIGTERM)
	w.wait(10 * time.Second)
}

func TestPortInUseIsAStartError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := config(t, "- {name: a, entrypoint: CHILD, args: [sleep]}\n")
	out, err := exec.Command(wrapperBin, "-config", cfg, "-http-address", ln.Addr().String(), "-readiness-file", filepath.Join(t.TempDir(), "s")).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "address already in use") || strings.Contains(string(out), "process started") {
		t.Errorf("%v %s", err, out)
	}
}
