// Package e2e runs the built process-wrapper binary against the testchild
// helper program: real processes, real signals, real pipes.
package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logfmt/logfmt"
	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

var (
	wrapperBin string
	childBin   string
	lockBin    string // the shared-lock server
	mockBin    string // metadata-mock
	eventsBin  string // metrics-mock
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pw-e2e-")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755) // other users (the user: tests) run testchild from here
	wrapperBin = filepath.Join(dir, "process-wrapper")
	childBin = filepath.Join(dir, "testchild")
	lockBin = filepath.Join(dir, "shared-lock")
	mockBin = filepath.Join(dir, "metadata-mock")
	eventsBin = filepath.Join(dir, "metrics-mock")
	for bin, pkg := range map[string]string{wrapperBin: "../../cmd/process-wrapper", childBin: "../../internal/testchild",
		lockBin: "../../cmd/shared-lock", mockBin: "../../cmd/metadata-mock", eventsBin: "../../cmd/metrics-mock"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if raceBuild && bin == wrapperBin {
			cmd = exec.Command("go", "build", "-race", "-o", bin, pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// line is one decoded logfmt line of the wrapper's output.
type line map[string]string

// wrapper is one running process-wrapper with its output collected.
type wrapper struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  []line
	raw  bytes.Buffer
	done chan struct{}
	code int
	wpid int // the wrapper's pid under unshare, once looked up
	// socket is its control socket (-control-socket)
	socket string
}

type opts struct {
	args []string
	env  []string
	// prefix runs the wrapper under another program (unshare, sh -c ...)
	prefix []string
	bin    string    // the wrapper binary, when not wrapperBin
	raw    io.Writer // also copy the raw output here
	// sink, when set, sees every output line first; a line it returns true
	// for is consumed and not kept (for tests that relay millions of lines).
	sink func(b []byte) bool
	// stderr receives the wrapper's stderr (Go's crash reports); default os.Stderr
	stderr io.Writer
	// rawArgs, when set, are the whole command line (no -config,
	// -http-address or -readiness-file added): for check
	rawArgs []string
}

// config writes a YAML config where every "CHILD" stands for the testchild
// binary's path.
func config(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(yaml, "CHILD", childBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func start(t *testing.T, cfg string, o opts) *wrapper {
	t.Helper()
	// every wrapper gets its own port and readiness file: tests run in parallel
	socket := filepath.Join(t.TempDir(), "control", "socket")
	args := append([]string{"-config", cfg, "-http-address", "127.0.0.1:0", "-readiness-file", filepath.Join(t.TempDir(), "started"),
		"-control-socket", socket}, o.args...)
	bin := wrapperBin
	if o.bin != "" {
		bin = o.bin
	}
	argv := append(append([]string(nil), o.prefix...), bin)
	if o.rawArgs != nil {
		args = o.rawArgs
	}
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	// a race-built wrapper would otherwise sleep a second at its exit
	// (ThreadSanitizer's atexit_sleep_ms), which the timing tests would count
	// PW_E2E_TEST names the test in its processes' environment: a process
	// left behind tells which test left it
	cmd.Env = append(append(os.Environ(), "GORACE=atexit_sleep_ms=0", "PW_E2E_TEST="+t.Name()), o.env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if o.stderr != nil {
		cmd.Stderr = o.stderr
	}
	w := &wrapper{t: t, cmd: cmd, done: make(chan struct{}), socket: socket}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r := bufio.NewReaderSize(stdout, 4<<20)
		for {
			b, err := r.ReadBytes('\n')
			if len(b) > 0 {
				if o.raw != nil {
					o.raw.Write(b)
				}
				if o.sink != nil && o.sink(b) {
					continue
				}
				l := decode(b)
				w.mu.Lock()
				if l == nil {
					w.raw.Write(b)
				} else {
					w.out = append(w.out, l)
				}
				w.mu.Unlock()
			}
			if err != nil {
				break
			}
		}
		err := cmd.Wait()
		w.code = cmd.ProcessState.ExitCode()
		if ee, ok := err.(*exec.ExitError); ok && ee.ProcessState.Sys().(syscall.WaitStatus).Signaled() {
			w.code = 128 + int(ee.ProcessState.Sys().(syscall.WaitStatus).Signal())
		}
		close(w.done)
	}()
	t.Cleanup(func() {
		select {
		case <-w.done:
		default:
			w.kill()
		}
		if t.Failed() {
			t.Logf("wrapper output:\n%s", w.dump())
		}
	})
	return w
}

// kill ends a wrapper still running at the end of its test with SIGKILL,
// and its processes with it: a wrapper that is not PID 1 leaves them
// running (they are the point of control_test's killed wrapper), and a
// test must leave no process behind. Frozen first, the wrapper starts no
// process meanwhile. Under unshare the wrapper is unshare's child and PID 1
// of its namespace: killing it ends the namespace's processes.
func (w *wrapper) kill() {
	pid := w.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	for _, child := range children(pid) {
		if filepath.Base(w.cmd.Path) != "unshare" {
			for _, grandchild := range children(child) {
				_ = syscall.Kill(-grandchild, syscall.SIGKILL) // each process's own group
				_ = syscall.Kill(grandchild, syscall.SIGKILL)
			}
			_ = syscall.Kill(-child, syscall.SIGKILL)
		}
		_ = syscall.Kill(child, syscall.SIGKILL)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	<-w.done
}

// children lists pid's children: those of each of its threads (any thread
// of a Go program may be the one that forks).
func children(pid int) []int {
	var pids []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range bytes.Fields(b) {
			var c int
			if _, err := fmt.Sscan(string(f), &c); err == nil {
				pids = append(pids, c)
			}
		}
	}
	return pids
}

func decode(b []byte) line {
	d := logfmt.NewDecoderSize(bytes.NewReader(b), len(b)+1)
	l := line{}
	for d.ScanRecord() {
		for d.ScanKeyval() {
			l[string(d.Key())] = string(d.Value())
		}
	}
	if d.Err() != nil || l["ts"] == "" {
		return nil
	}
	return l
}

func (w *wrapper) dump() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for i, l := range w.out {
		if i > 200 {
			fmt.Fprintf(&b, "... %d more lines\n", len(w.out)-i)
			break
		}
		m := l["msg"]
		if len(m) > 200 {
			m = m[:200] + "..."
		}
		fmt.Fprintf(&b, "%s %s %s %q %v\n", l["level"], l["app"], l["stream"], m, rest(l))
	}
	if w.raw.Len() > 0 {
		fmt.Fprintf(&b, "not logfmt: %q\n", w.raw.String())
	}
	return b.String()
}

func rest(l line) map[string]string {
	m := map[string]string{}
	for k, v := range l {
		switch k {
		case "ts", "level", "app", "stream", "msg":
		default:
			m[k] = v
		}
	}
	return m
}

// lines returns a copy of the decoded lines so far.
func (w *wrapper) lines() []line {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]line(nil), w.out...)
}

// find returns the lines matching every key=value of match.
func (w *wrapper) find(match ...string) []line {
	var found []line
	for _, l := range w.lines() {
		if l.matches(match) {
			found = append(found, l)
		}
	}
	return found
}

// matches reports whether l has every key=value of match.
func (l line) matches(match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		if l[match[i]] != match[i+1] {
			return false
		}
	}
	return true
}

// waitLine waits until a line matching every key=value of match is out.
func (w *wrapper) waitLine(timeout time.Duration, match ...string) line {
	w.t.Helper()
	var got line
	waitfor.Condition(w.t, timeout, fmt.Sprintf("a line with %q", match), func() bool {
		if f := w.find(match...); len(f) > 0 {
			got = f[0]
			return true
		}
		return false
	})
	return got
}

// wait waits for the wrapper to exit and returns its exit code.
func (w *wrapper) wait(timeout time.Duration) int {
	w.t.Helper()
	select {
	case <-w.done:
		return w.code
	case <-time.After(timeout):
		w.t.Fatalf("wrapper still running after %v", timeout)
		return -1
	}
}

// signal sends sig to the wrapper itself (not to unshare, which runs it
// as PID 1 in the PID 1 tests).
func (w *wrapper) signal(sig syscall.Signal) {
	w.t.Helper()
	if err := syscall.Kill(w.pid(), sig); err != nil {
		w.t.Fatal(err)
	}
}

// pid returns the wrapper's own pid as this test sees it: under unshare
// --fork (the PID 1 tests) that is unshare's child once it runs the wrapper.
func (w *wrapper) pid() int {
	w.t.Helper()
	if filepath.Base(w.cmd.Path) != "unshare" {
		return w.cmd.Process.Pid
	}
	w.mu.Lock()
	pid := w.wpid
	w.mu.Unlock()
	if pid != 0 {
		return pid
	}
	waitfor.Condition(w.t, 5*time.Second, "unshare's child to run the wrapper", func() bool {
		c := children(w.cmd.Process.Pid)
		if len(c) == 0 {
			return false
		}
		pid = c[0]
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		return filepath.Base(exe) == filepath.Base(wrapperBin)
	})
	w.mu.Lock()
	w.wpid = pid
	w.mu.Unlock()
	return pid
}

// procState is the state letter of /proc/PID/stat (R, S, T, Z...), or "" once
// the pid is gone.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return ""
}

// url returns the base URL of the wrapper's endpoints, from its "starting" line.
func (w *wrapper) url() string {
	w.t.Helper()
	l := w.waitLine(10*time.Second, "msg", "starting")
	return "http://" + l["http"]
}

func ts(t *testing.T, l line) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, l["ts"])
	if err != nil {
		t.Fatalf("bad ts in %v: %v", l, err)
	}
	return v
}

// startServer runs one of the project's other binaries (metadata-mock,
// metrics-mock, shared-lock) until the test ends, and waits until readyURL
// answers 200.
func startServer(t *testing.T, cmd *exec.Cmd, readyURL string, timeout time.Duration) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitfor.Condition(t, timeout, filepath.Base(cmd.Path), func() bool {
		resp, err := http.Get(readyURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}
