package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// component is one process of the cluster. It runs in a session of its own
// (so that make kube-up can leave it running), its output goes to
// dir/logs/NAME.log, and its pid to dir/pids/NAME, which is how a later
// run, or make kube-down, finds and stops it.
type component struct {
	name string
	pid  int
}

// startComponent starts argv as the component name of the cluster in dir.
func startComponent(dir, name string, env []string, argv ...string) (*component, error) {
	for _, d := range []string{"logs", "pids"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
	}
	logPath := filepath.Join(dir, "logs", name+".log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer log.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, argv[0], err)
	}
	pid := cmd.Process.Pid
	// the component outlives this process under make kube-up: nothing waits
	// for it here; stop reaps it when it is our child, and init does
	// otherwise
	cmd.Process.Release()
	if err := os.WriteFile(filepath.Join(dir, "pids", name), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &component{name: name, pid: pid}, nil
}

// stopComponents stops the components recorded under dir, in the order
// given (the rest after them): SIGTERM, then SIGKILL after grace. A pid is
// only signalled while it still runs the program it was started with
// (/proc/PID/cmdline names the cluster's dir or binary), so that a pid
// reused by another program is left alone.
func stopComponents(dir string, grace time.Duration, order ...string) error {
	names, _ := filepath.Glob(filepath.Join(dir, "pids", "*"))
	seen := map[string]bool{}
	var all []string
	for _, n := range order {
		seen[n] = true
		all = append(all, n)
	}
	for _, p := range names {
		if n := filepath.Base(p); !seen[n] {
			all = append(all, n)
		}
	}
	return stopNamed(dir, grace, all...)
}

// stopNamed stops only the named components of the cluster in dir.
func stopNamed(dir string, grace time.Duration, names ...string) error {
	var errs []error
	for _, n := range names {
		if err := stopOne(dir, n, grace); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func stopOne(dir, name string, grace time.Duration) error {
	pidFile := filepath.Join(dir, "pids", name)
	b, err := os.ReadFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("stop %s: bad pid file %s: %q", name, pidFile, b)
	}
	if ours(pid, dir) {
		// each component leads a session and process group of its own:
		// the whole group is signalled, so that nothing it started is left
		syscall.Kill(-pid, syscall.SIGTERM)
		gone := func() bool { reap(pid); return !ours(pid, dir) }
		if !waitfor.Poll(grace, gone) {
			syscall.Kill(-pid, syscall.SIGKILL)
			if !waitfor.Poll(10*time.Second, gone) {
				return fmt.Errorf("stop %s: pid %d outlived SIGKILL", name, pid)
			}
		}
		// what the leader left of its group (ESRCH when nothing)
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	return os.Remove(pidFile)
}

// reap collects pid when it is this process's child (a test's cluster);
// for make kube-down's, init does.
func reap(pid int) {
	var ws syscall.WaitStatus
	syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
}

// ours tells whether pid still runs and its command line names dir or a
// path under it (every component is given paths under its cluster's dir):
// a zombie or a reused pid is not ours, nor a process of a directory whose
// name only begins like dir's.
func ours(pid int, dir string) bool {
	if dir == "" {
		return false
	}
	path := fmt.Sprintf("/proc/%d/cmdline", pid)
	cmdline, err := os.ReadFile(path)
	// right after execve, a process's new command line may read empty for
	// a moment: one just started is not taken for another's (a kernel
	// thread's is empty for good, and it has no executable)
	if _, exeErr := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && exeErr == nil && len(cmdline) == 0 {
		waitfor.Poll(time.Second, func() bool {
			cmdline, err = os.ReadFile(path)
			return err != nil || len(cmdline) > 0 || zombie(pid)
		})
	}
	if err != nil || len(cmdline) == 0 {
		return false
	}
	s := string(cmdline)
	for i := 0; ; {
		j := strings.Index(s[i:], dir)
		if j < 0 {
			return false
		}
		end := i + j + len(dir)
		if end == len(s) || s[end] == '/' || s[end] == 0 {
			return true
		}
		i = end
	}
}
