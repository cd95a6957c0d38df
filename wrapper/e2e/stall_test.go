package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// stalled starts the wrapper with its stdout on a FIFO that is open but not
// read (a log collector that stalls): the pipe fills, then every write to it
// blocks. It returns the wrapper, the FIFO's read end (for the test to start
// reading when it chooses) and the base URL of its endpoints.
func stalled(t *testing.T, cfg string, args ...string) (*exec.Cmd, *os.File, string) {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "stdout")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// O_RDWR: opening does not wait for a writer, and the FIFO never reports EOF
	rd, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	wr, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer wr.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(wrapperBin, append([]string{"-config", cfg, "-http-address", addr,
		"-readiness-file", filepath.Join(t.TempDir(), "started")}, args...)...)
	cmd.Stdout, cmd.Stderr = wr, os.Stderr
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	base := "http://" + addr
	if !waitfor.Poll(10*time.Second, func() bool {
		resp, err := http.Get(base + "/liveness")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}) {
		rd.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		b := make([]byte, 4096)
		n, _ := rd.Read(b)
		t.Fatalf("the endpoints never answered; the wrapper wrote %q", b[:n])
	}
	return cmd, rd, base
}

// restarts reads process_wrapper_process_restarts_total for a process.
func restarts(t *testing.T, base, process string) float64 {
	fams, _ := scrape(t, base+"/metrics")
	v, _ := value(fams, "process_wrapper_process_restarts_total", map[string]string{"process": process, "reason": "exit"})
	return v
}

// A stdout nobody reads stops nothing: a crashing process is still
// restarted, /readiness and /metrics tell the truth, and once stdout moves
// again no line of a process is lost, and one line (and a metric) says how
// many of the wrapper's own lines were dropped meanwhile.
func TestStalledStdoutStopsNothing(t *testing.T) {
	t.Parallel()
	cfg := config(t, `
- {name: noisy, entrypoint: CHILD, args: [lines, "200000", "100"], restartPolicy: Never}
- {name: crasher, entrypoint: CHILD, args: [exit, "3"]}
- {name: steady, entrypoint: CHILD, args: [trap, "0"]}`)
	cmd, rd, base := stalled(t, cfg, "-graceful-shutdown-deadline", "3s")
	waitfor.Condition(t, 20*time.Second, "the crasher restarted twice with stdout blocked", func() bool {
		return restarts(t, base, "crasher") >= 2
	})
	// the crasher is down or just restarted: /readiness says so, not "ok"
	waitfor.Condition(t, 10*time.Second, "/readiness to name the crasher", func() bool {
		code, body := httpGet(t, base+"/readiness")
		return code == 503 && strings.Contains(body, "crasher")
	})
	// more of the wrapper's own lines than its queue holds: each forwarded
	// signal is logged once per process
	waitfor.Condition(t, 30*time.Second, "the wrapper to drop some of its own lines", func() bool {
		for range 50 {
			cmd.Process.Signal(syscall.SIGWINCH)
		}
		fams, _ := scrape(t, base+"/metrics")
		v, _ := value(fams, "process_wrapper_log_lines_dropped_total", nil)
		return v > 0
	})
	// stdout moves again: read it all from here
	lines := make(chan []byte, 1024)
	go func() {
		defer close(lines)
		r := bufio.NewReaderSize(rd, 1<<20)
		for {
			b, err := r.ReadBytes('\n')
			if len(b) > 0 {
				lines <- b
			}
			if err != nil {
				return
			}
		}
	}()
	next, dropped := 0, 0
	deadline := time.After(60 * time.Second)
	for next < 200000 {
		select {
		case b, ok := <-lines:
			if !ok {
				t.Fatal("stdout ended")
			}
			l := decode(b)
			switch {
			case l == nil:
				t.Fatalf("not a logfmt line: %q", b)
			case l["app"] == "noisy" && l["stream"] == "stdout":
				n, _ := strconv.Atoi(strings.Fields(l["msg"])[0])
				if n != next {
					t.Fatalf("noisy's line %d came after %d: lines were lost", n, next-1)
				}
				next++
			case l["msg"] == "dropped the wrapper's own log lines while its output was blocked":
				n, _ := strconv.Atoi(l["dropped"])
				dropped += n
			}
		case <-deadline:
			t.Fatalf("noisy did not finish: %d lines read", next)
		}
	}
	if next != 200000 {
		t.Errorf("%d of noisy's 200000 lines", next)
	}
	fams, _ := scrape(t, base+"/metrics")
	counted, _ := value(fams, "process_wrapper_log_lines_dropped_total", nil)
	cmd.Process.Signal(syscall.SIGTERM)
	var tail bytes.Buffer
	for b := range lines {
		tail.Write(b)
		if l := decode(b); l != nil && l["msg"] == "dropped the wrapper's own log lines while its output was blocked" {
			n, _ := strconv.Atoi(l["dropped"])
			dropped += n
		}
		if bytes.Contains(b, []byte(`msg="exiting"`)) {
			break
		}
	}
	if dropped == 0 || float64(dropped) != counted {
		t.Errorf("the lines said %d of the wrapper's own lines were dropped, process_wrapper_log_lines_dropped_total %v", dropped, counted)
	}
	if !strings.Contains(tail.String(), `msg="shutting down"`) || !strings.Contains(tail.String(), `msg="exiting" code=3`) {
		t.Errorf("the shutdown's lines are missing:\n%s", tail.String())
	}
}

// With a stdout that never moves again, SIGTERM still stops every process
// at once, SIGKILL still comes at the deadline, and the wrapper exits with
// the right code within the deadline plus a second.
func TestStalledStdoutShutdown(t *testing.T) {
	t.Parallel()
	cfg := config(t, `
- {name: noisy, entrypoint: CHILD, args: [lines, "2000000", "100"], restartPolicy: Never}
- {name: crasher, entrypoint: CHILD, args: [exit, "3"]}
- {name: stubborn, entrypoint: CHILD, args: [ignore-term]}`)
	cmd, _, base := stalled(t, cfg, "-graceful-shutdown-deadline", "2s")
	waitfor.Condition(t, 20*time.Second, "the crasher restarted with stdout blocked", func() bool {
		return restarts(t, base, "crasher") >= 1
	})
	began := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		took := time.Since(began)
		code := cmd.ProcessState.ExitCode()
		if code != 3 && code != 143 {
			t.Errorf("exit code %d (%v), want the crasher's 3 or noisy's 143", code, err)
		}
		if took < 2*time.Second || took > 3*time.Second {
			t.Errorf("exited %v after SIGTERM, want between the 2s deadline (stubborn ignores SIGTERM) and a second after it", took)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the wrapper did not exit with its stdout blocked")
	}
}
