package e2e

import (
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// At shutdown, what a run left in its process group (a shell's background
// job) gets the stop signal once the main pid has ended, and the wrapper
// does not exit before it has ended; its exit does not count.
func TestShutdownStopsWhatARunLeftBehind(t *testing.T) {
	asPID1AndNot(t, func(t *testing.T, prefix []string) {
		w := start(t, config(t, `
- {name: job, entrypoint: sh, args: [-c, "CHILD trap 5 & wait"], restartPolicy: Never}`), opts{prefix: prefix})
		w.waitLine(5*time.Second, "app", "job", "msg", "trapping signals")
		w.signal(syscall.SIGTERM)
		if code := w.wait(10 * time.Second); code != 143 {
			t.Errorf("exit code %d, want 143 (the shell's; its background job's 5 does not count)", code)
		}
		w.waitLine(time.Second, "msg", "stopping what the process left in its process group", "process", "job", "processes", "1", "signal", "SIGTERM")
		got := w.waitLine(time.Second, "app", "job", "msg", "got SIGTERM")
		exiting := w.waitLine(time.Second, "msg", "exiting", "code", "143")
		if ts(t, exiting).Before(ts(t, got)) {
			t.Error("the wrapper exited before what the run left behind got its stop signal")
		}
	})
}

// A leftover that ignores its stop signal is SIGKILLed at the deadline; the
// wrapper then exits, and the leftover is gone.
func TestLeftoverKilledAtTheDeadline(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: job, entrypoint: sh, args: [-c, "CHILD ignore-term & echo bg=$!; wait"], restartPolicy: Never}`),
		opts{args: []string{"-graceful-shutdown-deadline", "1s"}})
	bg := w.waitLine(5*time.Second, "app", "job", "msg")
	w.waitLine(5*time.Second, "app", "job", "msg", "ignoring SIGTERM")
	pid, err := strconv.Atoi(bg["msg"][len("bg="):])
	if err != nil {
		t.Fatalf("line %v: %v", bg, err)
	}
	began := time.Now()
	w.signal(syscall.SIGTERM)
	if code := w.wait(5 * time.Second); code != 143 {
		t.Errorf("exit code %d, want 143", code)
	}
	if d := time.Since(began); d < time.Second || d > 3*time.Second {
		t.Errorf("exited %v after SIGTERM, want just after the 1s deadline", d)
	}
	w.waitLine(time.Second, "msg", "deadline reached: killing what the process left in its process group", "process", "job", "processes", "1")
	if st := procState(pid); st != "" && st != "Z" {
		t.Errorf("the leftover %d is still there (state %s) after the wrapper exited", pid, st)
	}
}

// A restart waits for what the last run left behind: it gets the stop
// signal during the backoff, SIGKILL at the deadline, and the next run
// starts only once it has ended, so that leftovers never pile up.
func TestRestartWaitsForLeftovers(t *testing.T) {
	asPID1AndNot(t, func(t *testing.T, prefix []string) {
		w := start(t, config(t, `
- {name: job, entrypoint: sh, args: [-c, "CHILD ignore-term & sleep 0.1; exit 3"]}`),
			opts{prefix: prefix, args: []string{"-graceful-shutdown-deadline", "2s"}})
		waitfor.Condition(t, 20*time.Second, "three runs", func() bool {
			return len(w.find("msg", "process started", "process", "job")) >= 3
		})
		starts := w.find("msg", "process started", "process", "job")
		exits := w.find("msg", "process exited", "process", "job", "code", "3")
		kills := w.find("msg", "deadline reached: killing what the process left in its process group", "process", "job")
		stops := w.find("msg", "stopping what the process left in its process group", "process", "job")
		for i := 0; i < 2; i++ {
			if len(exits) <= i || len(kills) <= i || len(stops) <= i {
				t.Fatalf("run %d: %d exits, %d leftover stops, %d leftover kills", i+1, len(exits), len(stops), len(kills))
			}
			if stops[i]["processes"] != "1" {
				t.Errorf("run %d left %s processes behind, want 1: leftovers piled up", i+1, stops[i]["processes"])
			}
			next := ts(t, starts[i+1])
			if gap := next.Sub(ts(t, exits[i])); gap < 1900*time.Millisecond {
				t.Errorf("run %d started %v after the last exit: before its leftover's 2s deadline", i+2, gap)
			}
			if next.Before(ts(t, kills[i])) {
				t.Errorf("run %d started before its leftover was killed", i+2)
			}
		}
		w.signal(syscall.SIGTERM)
		if code := w.wait(10 * time.Second); code != 3 && code != 143 {
			t.Errorf("exit code %d, want the job's own (3 or 143)", code)
		}
	})
}

// A process that completed keeps what it left behind running (counted in
// the log and in /metrics) until the shutdown; a process left alone ends
// the wrapper, which first stops the leftovers. Their codes never count.
func TestCompletedProcessLeftovers(t *testing.T) {
	t.Parallel()
	t.Run("kept until shutdown", func(t *testing.T) {
		t.Parallel()
		w := start(t, config(t, `
- {name: setup, entrypoint: CHILD, args: [background, "0", trap, "5"], restartPolicy: Never}
- {name: app, entrypoint: CHILD, args: [trap, "0"]}`), opts{})
		base := w.url()
		w.waitLine(5*time.Second, "msg", "the process left processes in its process group: they run until the wrapper shuts down", "process", "setup", "processes", "1")
		waitfor.Condition(t, 5*time.Second, "/metrics to count the leftover", func() bool {
			fams, _ := scrape(t, base+"/metrics")
			v, _ := value(fams, "process_wrapper_process_leftover_processes", map[string]string{"process": "setup"})
			return v == 1
		})
		if code, body := httpGet(t, base+"/readiness"); code != 200 {
			t.Errorf("/readiness %d %q: a completed process with leftovers is still completed", code, body)
		}
		w.signal(syscall.SIGTERM)
		if code := w.wait(10 * time.Second); code != 0 {
			t.Errorf("exit code %d, want 0: the leftover's 5 does not count", code)
		}
		w.waitLine(time.Second, "app", "setup", "msg", "got SIGTERM")
	})
	t.Run("stopped when nothing else runs", func(t *testing.T) {
		t.Parallel()
		w := start(t, config(t, `
- {name: setup, entrypoint: CHILD, args: [background, "0", trap, "5"], restartPolicy: Never}`), opts{})
		if code := w.wait(10 * time.Second); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		got := w.waitLine(time.Second, "app", "setup", "msg", "got SIGTERM")
		exiting := w.waitLine(time.Second, "msg", "exiting")
		if ts(t, exiting).Before(ts(t, got)) {
			t.Error("the wrapper exited before stopping the leftover")
		}
	})
}

// The floatingPid daemon is the process, not a leftover of the run that
// forked it: it is not stopped when that run's main pid exits.
func TestFloatingDaemonIsNotALeftover(t *testing.T) {
	t.Parallel()
	pidFile := fmt.Sprintf("%s/daemon.pid", t.TempDir())
	w := start(t, config(t, fmt.Sprintf(`
- name: daemon
  entrypoint: sh
  args: [-c, "CHILD sleep & echo $! > %s"]
  liveness: {floatingPid: {pidFile: %s}, periodSeconds: 1}`, pidFile, pidFile)), opts{})
	w.waitLine(5*time.Second, "msg", "following the daemon's pid", "process", "daemon")
	if len(w.find("msg", "stopping what the process left in its process group")) != 0 {
		t.Error("the adopted daemon was stopped as a leftover")
	}
	w.signal(syscall.SIGTERM)
	if code := w.wait(10 * time.Second); code != 143 {
		t.Errorf("exit code %d, want 143 (the daemon's)", code)
	}
}
