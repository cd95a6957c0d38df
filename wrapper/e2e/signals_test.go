package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/process-wrapper/process-wrapper/internal/syncbuf"
	"github.com/process-wrapper/process-wrapper/internal/waitfor"
	pwconfig "github.com/process-wrapper/process-wrapper/wrapper/config"
)

// notForwarded are the signals that kill can send and the wrapper keeps
// (SPEC.md): the three it stops on, SIGPIPE (taken and ignored), SIGCHLD
// (the reaper's), and Go's runtime's SIGPROF and SIGURG.
var notForwarded = map[syscall.Signal]bool{syscall.SIGTERM: true, syscall.SIGINT: true, syscall.SIGQUIT: true,
	syscall.SIGPIPE: true, syscall.SIGCHLD: true, syscall.SIGPROF: true, syscall.SIGURG: true,
	syscall.SIGKILL: true, syscall.SIGSTOP: true}

var pid1 = []string{"unshare", "--pid", "--fork", "--mount-proc"}

// asPID1AndNot runs f with the wrapper as PID 1 of its own PID namespace
// (as in a container) and as an ordinary child (a shared PID namespace).
func asPID1AndNot(t *testing.T, f func(t *testing.T, prefix []string)) {
	t.Run("pid1", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("unshare --pid needs root")
		}
		if _, err := exec.LookPath("unshare"); err != nil {
			t.Fatal("unshare (util-linux) is needed for the PID 1 tests")
		}
		t.Parallel()
		f(t, pid1)
	})
	t.Run("child", func(t *testing.T) {
		t.Parallel()
		f(t, nil)
	})
}

// Every signal kill can send, but those SPEC.md keeps, reaches the main
// pid of the process, and none ends or stops the wrapper: SIGABRT, SIGSEGV
// and the other "fault" signals sent with kill included.
func TestEverySignalIsForwarded(t *testing.T) {
	asPID1AndNot(t, func(t *testing.T, prefix []string) {
		w := start(t, config(t, `- {name: trap, entrypoint: CHILD, args: [trap, "0"]}`), opts{prefix: prefix})
		w.waitLine(5*time.Second, "app", "trap", "msg", "trapping signals")
		pid := w.pid()
		for n := syscall.Signal(1); n <= 31; n++ {
			if notForwarded[n] {
				continue
			}
			if err := syscall.Kill(pid, n); err != nil {
				t.Fatal(err)
			}
			w.waitLine(5*time.Second, "app", "trap", "msg", "got "+pwconfig.SignalName(n))
			w.waitLine(5*time.Second, "msg", "forwarded signal", "process", "trap", "signal", pwconfig.SignalName(n))
			if st := procState(pid); st == "T" || st == "" || st == "Z" {
				t.Fatalf("after %s the wrapper's state is %q", pwconfig.SignalName(n), st)
			}
		}
		// kept by the wrapper: nothing reaches the process, nothing happens
		for _, n := range []syscall.Signal{syscall.SIGPIPE, syscall.SIGURG, syscall.SIGPROF, syscall.SIGCHLD} {
			if err := syscall.Kill(pid, n); err != nil {
				t.Fatal(err)
			}
		}
		// a forwarded signal after them is still delivered, and alone
		syscall.Kill(pid, syscall.SIGUSR1)
		waitfor.Condition(t, 5*time.Second, "a second SIGUSR1", func() bool {
			return len(w.find("app", "trap", "msg", "got SIGUSR1")) == 2
		})
		for _, n := range []string{"SIGPIPE", "SIGURG", "SIGPROF", "SIGCHLD"} {
			if len(w.find("app", "trap", "msg", "got "+n)) != 0 {
				t.Errorf("%s was forwarded", n)
			}
		}
		w.signal(syscall.SIGTERM)
		if code := w.wait(10 * time.Second); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
	})
}

// The issue's own case: a process sends SIGABRT to PID 1 (as a buggy child
// or `docker kill -s ABRT` would). The wrapper survives, forwards it, and
// exits with the process's code.
func TestAbortSentToPID1(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("unshare --pid needs root")
	}
	t.Parallel()
	w := start(t, config(t, `
- {name: app, entrypoint: sh, args: ["-c", "trap 'echo got ABRT; exit 7' ABRT; kill -ABRT 1; while :; do sleep 0.05; done"], restartPolicy: Never}`),
		opts{prefix: pid1})
	if code := w.wait(10 * time.Second); code != 7 {
		t.Errorf("exit code %d, want 7 (the process's, after it got the forwarded SIGABRT)", code)
	}
	w.waitLine(time.Second, "app", "app", "msg", "got ABRT")
	w.waitLine(time.Second, "msg", "exiting", "code", "7")
}

// A forwarded SIGTSTP, SIGTTIN or SIGTTOU stops the process, not the
// wrapper; the state and /metrics show it stopped; SIGCONT continues it;
// and the stop signal at shutdown is followed by SIGCONT, so that a
// stopped process still ends long before the deadline.
func TestStoppedProcess(t *testing.T) {
	asPID1AndNot(t, func(t *testing.T, prefix []string) {
		w := start(t, config(t, `
- {name: app, entrypoint: CHILD, args: [sleep]}`), opts{prefix: prefix, args: []string{"-graceful-shutdown-deadline", "30s"}})
		base := w.url()
		started := w.waitLine(5*time.Second, "msg", "process started", "process", "app")
		var child int
		fmt.Sscan(started["pid"], &child)
		pid := w.pid()
		if len(prefix) > 0 {
			child = onlyChild(t, pid) // the log names its pid in the wrapper's namespace
		}
		suspended := func() float64 {
			fams, _ := scrape(t, base+"/metrics")
			v, _ := value(fams, "process_wrapper_process_suspended", map[string]string{"process": "app"})
			return v
		}
		for i, sig := range []syscall.Signal{syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU} {
			syscall.Kill(pid, sig)
			waitfor.Condition(t, 5*time.Second, pwconfig.SignalName(sig)+" to stop the process", func() bool { return procState(child) == "T" })
			w.waitLine(5*time.Second, "msg", "process stopped by a signal: it runs again on SIGCONT", "process", "app", "signal", pwconfig.SignalName(sig))
			waitfor.Condition(t, 5*time.Second, "/metrics to show it suspended", func() bool { return suspended() == 1 })
			if st := procState(pid); st == "T" {
				t.Fatalf("%s stopped the wrapper", pwconfig.SignalName(sig))
			}
			if i == 2 {
				break // shut down with the process stopped
			}
			syscall.Kill(pid, syscall.SIGCONT)
			waitfor.Condition(t, 5*time.Second, "SIGCONT to continue the process", func() bool { return procState(child) != "T" })
			waitfor.Condition(t, 5*time.Second, "/metrics to show it running again", func() bool { return suspended() == 0 })
		}
		began := time.Now()
		syscall.Kill(pid, syscall.SIGTERM)
		if code := w.wait(10 * time.Second); code != 143 {
			t.Errorf("exit code %d, want 143", code)
		}
		if d := time.Since(began); d > 10*time.Second {
			t.Errorf("a stopped process took %v to end: its SIGTERM was not followed by SIGCONT", d)
		}
		if len(w.find("msg", "graceful shutdown deadline reached: killing process group")) != 0 {
			t.Error("the stopped process was killed at the deadline: SIGCONT did not follow the stop signal")
		}
	})
}

// onlyChild is the one child of pid.
func onlyChild(t *testing.T, pid int) int {
	t.Helper()
	var child int
	waitfor.Condition(t, 5*time.Second, "the wrapper's child", func() bool {
		// each thread lists the children it forked
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
		var f [][]byte
		for _, task := range tasks {
			b, _ := os.ReadFile(task)
			f = append(f, bytes.Fields(b)...)
		}
		if len(f) != 1 {
			return false
		}
		fmt.Sscan(string(f[0]), &child)
		return true
	})
	return child
}

// A real fault inside the wrapper still crashes it: only a SIGSEGV sent
// with kill (si_code SI_USER) is taken as a request to forward. The fault is
// made by rt_sigqueueinfo with si_code SI_QUEUE, which Go's runtime, like
// the kernel's own fault, does not count as sent by a user: it cannot be
// told apart from a fault of the wrapper's code.
func TestRealFaultStillCrashes(t *testing.T) {
	t.Parallel()
	var stderr syncbuf.Buffer
	w := start(t, config(t, `- {name: app, entrypoint: CHILD, args: [sleep]}`), opts{stderr: &stderr})
	started := w.waitLine(5*time.Second, "msg", "process started", "process", "app")
	// the crashed wrapper leaves its process behind: it is this test's
	if pid, err := strconv.Atoi(started["pid"]); err == nil && pid > 0 {
		t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	}
	// struct siginfo: si_signo, si_errno, si_code, then the fields
	var info [128]byte
	*(*int32)(unsafe.Pointer(&info[0])) = int32(syscall.SIGSEGV)
	*(*int32)(unsafe.Pointer(&info[8])) = -1 // SI_QUEUE
	if _, _, errno := syscall.Syscall(syscall.SYS_RT_SIGQUEUEINFO, uintptr(w.pid()), uintptr(syscall.SIGSEGV), uintptr(unsafe.Pointer(&info[0]))); errno != 0 {
		t.Fatal(errno)
	}
	if code := w.wait(10 * time.Second); code != 2 {
		t.Errorf("exit code %d after a fault, want Go's crash (2)", code)
	}
	if !strings.Contains(stderr.String(), "SIGSEGV") {
		t.Errorf("no crash report on stderr: %q", stderr.String())
	}
}

// A SIGTERM in the wrapper's first milliseconds: from the moment package
// signals has taken the stop signals (its initialiser, traced with
// GODEBUG=inittrace=1), no stop signal is lost and none ends in exit 2; a
// process that never started counts as ended by the signal, so the code is
// 143 however early the signal came. Before that moment only the kernel
// (as PID 1: the signal is dropped) or Go's default action (exit 2 as PID
// 1; killed by SIGTERM otherwise, which is 143 too) can answer: such runs
// are counted, not failed, and the window is reported.
func TestEarlyStopSignal(t *testing.T) {
	asPID1AndNot(t, func(t *testing.T, prefix []string) {
		runs := 40
		if len(prefix) > 0 {
			runs = 24
		}
		if raceBuild {
			runs /= 2 // a race-built wrapper takes several times the CPU to start
		}
		cfg := config(t, `- {name: app, entrypoint: CHILD, args: [sleep, 3s], restartPolicy: Never}`)
		type result struct {
			offset time.Duration
			after  bool // sent after the wrapper took the stop signals
			code   int
		}
		results := make([]result, runs)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 2)
		for i := range results {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				taken := make(chan struct{})
				var once sync.Once
				tw := &initWatch{mark: "wrapper/signals @", seen: func() { once.Do(func() { close(taken) }) }}
				w := start(t, cfg, opts{prefix: prefix, env: []string{"GODEBUG=inittrace=1"}, stderr: tw})
				pid := w.pid()
				offset := time.Duration(rand.N(20_001)) * time.Microsecond
				time.Sleep(offset) // the random offset under test, not a synchronisation
				after := false
				select {
				case <-taken:
					after = true
				default:
				}
				syscall.Kill(pid, syscall.SIGTERM)
				results[i] = result{offset: offset, after: after, code: w.wait(15 * time.Second)}
			}()
		}
		wg.Wait()
		early := map[int]int{}
		for _, r := range results {
			switch {
			case r.code == 143:
			case r.after:
				t.Errorf("SIGTERM %v after start, after the stop signals were taken: exit code %d, want 143", r.offset, r.code)
			case len(prefix) == 0:
				t.Errorf("SIGTERM %v after start, not PID 1: exit code %d, want 143 (caught, or Go's default action)", r.offset, r.code)
			default:
				early[r.code]++ // 0: the kernel dropped it; 2: Go's default action as PID 1
			}
		}
		t.Logf("%d runs; before the stop signals were taken, as PID 1: %v (exit code: runs)", runs, early)
	})
}

// initWatch calls seen once the wrapper's stderr (GODEBUG=inittrace=1)
// shows mark.
type initWatch struct {
	mu   sync.Mutex
	buf  []byte
	mark string
	seen func()
}

func (w *initWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if bytes.Contains(w.buf, []byte(w.mark)) {
		w.seen()
		w.buf = w.buf[:0]
	} else if i := bytes.LastIndexByte(w.buf, '\n'); i >= 0 {
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}
