package e2e

import (
	"fmt"
	"github.com/process-wrapper/process-wrapper/internal/waitfor"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A process that forks its daemon and exits: the wrapper follows the pid in
// the pid file, signals it, and collects its exit status.
func TestFloatingPid(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "daemon.pid")
	w := start(t, config(t, fmt.Sprintf(`
- name: daemon
  entrypoint: sh
  args: [-c, "CHILD trap 3 & echo $! > %[1]s"]
  restartPolicy: Never
  liveness: {floatingPid: {pidFile: %[1]q}, periodSeconds: 1}
- name: other
  entrypoint: CHILD
  args: [trap, "0"]
  restartPolicy: Never`, pidFile)), opts{})
	l := w.waitLine(10*time.Second, "msg", "following the daemon's pid", "process", "daemon")
	b, _ := os.ReadFile(pidFile)
	if l["pid"] != strings.TrimSpace(string(b)) || l["pid"] == l["parent"] {
		t.Fatalf("follows %s (parent %s), the pid file says %s", l["pid"], l["parent"], b)
	}
	w.waitLine(5*time.Second, "app", "daemon", "msg", "trapping signals")
	w.signal(syscall.SIGHUP)
	w.waitLine(5*time.Second, "app", "daemon", "msg", "got SIGHUP")
	w.signal(syscall.SIGTERM)
	w.waitLine(5*time.Second, "app", "daemon", "msg", "got SIGTERM")
	// the daemon's own exit code (3) reached the wrapper: it was not reaped as an anonymous orphan
	if code := w.wait(10 * time.Second); code != 3 {
		t.Errorf("exit code %d, want the daemon's 3", code)
	}
	w.waitLine(time.Second, "msg", "process exited", "process", "daemon", "pid", l["pid"], "code", "3")
}

// The daemon dies: that is the process's end, and the restart policy applies.
func TestFloatingPidDaemonDies(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "daemon.pid")
	w := start(t, config(t, fmt.Sprintf(`
- name: daemon
  entrypoint: sh
  args: [-c, "CHILD sleep & echo $! > %[1]s"]
  restartPolicy: OnFailure
  readiness: {floatingPid: {pidFile: %[1]q}, periodSeconds: 1}`, pidFile)), opts{})
	l := w.waitLine(10*time.Second, "msg", "following the daemon's pid", "process", "daemon")
	pid, _ := strconv.Atoi(l["pid"])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w.waitLine(5*time.Second, "msg", "process exited", "process", "daemon", "code", "137")
	w.waitLine(5*time.Second, "msg", "restarting process", "process", "daemon")
	waitfor.Condition(t, 10*time.Second, "the restarted daemon to be followed", func() bool {
		return len(w.find("msg", "following the daemon's pid", "process", "daemon")) == 2
	})
	w.signal(syscall.SIGTERM)
	w.wait(10 * time.Second)
}

func TestFloatingPidFileNeverWritten(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- name: daemon
  entrypoint: CHILD
  args: [exit, "0"]
  restartPolicy: Never
  liveness: {floatingPid: {pidFile: /nonexistent/daemon.pid}}`), opts{args: []string{"-graceful-shutdown-deadline", "500ms"}})
	if code := w.wait(10 * time.Second); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	l := w.waitLine(time.Second, "msg", "cannot follow the daemon of the process", "process", "daemon")
	if !strings.Contains(l["err"], "no such file") {
		t.Errorf("err %q", l["err"])
	}
}
