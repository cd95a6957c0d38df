// Package reaper owns every wait of the wrapper. As PID 1, or as a child
// subreaper, the wrapper inherits orphans that must be reaped, and a
// wait4(-1) loop would steal the exit status of the processes it supervises
// if anybody else waited for them. So nobody else waits: every process the
// wrapper starts (supervised processes, exec probes, hooks) is started
// through Start, which registers its pid under the same lock that the reap
// loop holds around wait4, and receives its exit from the reaper. Nothing in
// the wrapper may call exec.Cmd.Wait or os.Process.Wait.
package reaper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Exit is how a process ended.
type Exit struct {
	Pid    int
	Status syscall.WaitStatus
	Rusage syscall.Rusage
}

// Code is the exit code as a shell reports it: the code of a process that
// exited, 128+N for one killed by signal N.
func (e Exit) Code() int {
	switch {
	case e.Status.Exited():
		return e.Status.ExitStatus()
	case e.Status.Signaled():
		return 128 + int(e.Status.Signal())
	}
	return 255
}

// String describes the exit for logs: "exit code 3" or "killed by signal terminated".
func (e Exit) String() string {
	if e.Status.Signaled() {
		return fmt.Sprintf("killed by signal %d (%s)", int(e.Status.Signal()), e.Status.Signal())
	}
	return fmt.Sprintf("exit code %d", e.Code())
}

// Pause is a registered process being stopped by a signal (SIGSTOP,
// SIGTSTP, SIGTTIN, SIGTTOU) or continued (SIGCONT).
type Pause struct {
	Stopped bool           // false: it was continued
	Signal  syscall.Signal // the signal that stopped it
}

// waiter is a registered pid: who receives its exit and its pauses.
type waiter struct {
	exit    chan Exit
	onPause func(Pause) // may be nil
}

// Reaper reaps every child of the wrapper and hands each registered pid its
// exit. There is one per wrapper.
type Reaper struct {
	mu      sync.Mutex
	waiting map[int]waiter
	pidfds  map[int]int // adopted pids: a pidfd each, so a signal never reaches a reused pid
	recent  map[int]Exit
	order   []int // recent's pids, oldest first
	orphans atomic.Uint64
	reaped  chan struct{} // closed (and replaced) at each orphan reaped
	sigs    chan os.Signal

	// OnOrphan, when set before Run, hears the exit of every orphan reaped
	// (on the reaper's goroutine: it must not block).
	OnOrphan func(Exit)
}

// recentOrphans bounds how many orphan exits are kept for a late Adopt.
const recentOrphans = 1024

// New returns a reaper; Run must be called for it to reap.
func New() *Reaper {
	r := &Reaper{waiting: make(map[int]waiter), pidfds: make(map[int]int), recent: make(map[int]Exit),
		reaped: make(chan struct{}), sigs: make(chan os.Signal, 1)}
	signal.Notify(r.sigs, syscall.SIGCHLD)
	return r
}

// BecomeSubreaper makes the wrapper the reaper of its descendants' orphans
// when it is not PID 1 (PR_SET_CHILD_SUBREAPER), so that it reaps them as
// PID 1 would. It reports whether the wrapper reaps orphans.
func BecomeSubreaper() (bool, error) {
	if os.Getpid() == 1 {
		return true, nil
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return false, fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return true, nil
}

// Start forks and executes path with argv and attr, and registers the pid
// before any wait can see it. The returned channel receives its exit once.
// It uses syscall.ForkExec rather than exec.Cmd: the reaper owns the pid, so
// nothing of os.Process (its wait, its pidfd) is needed.
func (r *Reaper) Start(path string, argv []string, attr *syscall.ProcAttr) (int, <-chan Exit, error) {
	return r.StartWatched(path, argv, attr, nil)
}

// StartWatched is Start, and onPause hears each time the process is
// stopped or continued by a signal (on the reaper's goroutine: it must not
// block).
func (r *Reaper) StartWatched(path string, argv []string, attr *syscall.ProcAttr, onPause func(Pause)) (int, <-chan Exit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := syscall.ForkExec(path, argv, attr)
	if err != nil {
		return 0, nil, &os.PathError{Op: "fork/exec", Path: path, Err: err}
	}
	ch := make(chan Exit, 1)
	r.waiting[pid] = waiter{exit: ch, onPause: onPause}
	return pid, ch, nil
}

// Adopt registers pid, a process the wrapper did not start but inherited
// (a daemon that a supervised process forked before exiting), as if it had
// been started through Start. If it has already exited and been reaped as an
// orphan, its exit is delivered at once. It must be a child of the wrapper
// (which it is once its parent exited, the wrapper being PID 1 or a
// subreaper): only then is its exit status the wrapper's to collect.
// onPause, when not nil, hears its stops and continues as in StartWatched.
func (r *Reaper) Adopt(pid int, onPause func(Pause)) (<-chan Exit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan Exit, 1)
	if e, ok := r.recent[pid]; ok {
		delete(r.recent, pid)
		ch <- e
		return ch, nil
	}
	if _, ok := r.waiting[pid]; ok {
		return nil, fmt.Errorf("pid %d is already supervised", pid)
	}
	ppid, err := parentOf(pid)
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	if ppid != os.Getpid() {
		return nil, fmt.Errorf("pid %d is not a child of the wrapper (its parent is %d): the wrapper must be PID 1 or a subreaper, and the daemon a descendant of the process", pid, ppid)
	}
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		r.pidfds[pid] = fd
	}
	r.waiting[pid] = waiter{exit: ch, onPause: onPause}
	return ch, nil
}

// parentOf reads the parent pid of pid from /proc.
func parentOf(pid int) (int, error) { return statField(pid, 1) }

// pgrpOf reads the process group of pid from /proc.
func pgrpOf(pid int) (int, error) { return statField(pid, 2) }

// statField reads the numeric field i (0 is the state) after the command
// name of /proc/pid/stat.
func statField(pid, i int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, errors.New("no such process")
	}
	s := string(b)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(s[end+1:])
	if len(f) <= i {
		return 0, errors.New("unreadable /proc stat")
	}
	return strconv.Atoi(f[i])
}

// Signal sends sig to the registered, not yet reaped process pid; to its
// whole process group when group is true. Holding the lock that the reap loop
// holds around wait4 guarantees that the pid (and so the group id) has not
// been reaped and reused.
func (r *Reaper) Signal(pid int, sig syscall.Signal, group bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.waiting[pid]; !ok {
		return os.ErrProcessDone
	}
	if fd, ok := r.pidfds[pid]; ok {
		// an adopted daemon: by its pidfd, and its group only if it leads one
		if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
			return fmt.Errorf("pidfd_send_signal(%d, %s): %w", pid, sig, err)
		}
		if pg, err := syscall.Getpgid(pid); group && err == nil && pg == pid {
			_ = syscall.Kill(-pid, sig)
		}
		return nil
	}
	target := pid
	if group {
		target = -pid
	}
	if err := syscall.Kill(target, sig); err != nil {
		return fmt.Errorf("kill(%d, %s): %w", target, sig, err)
	}
	return nil
}

// SignalGroup sends sig to process group pgid if the group still has a
// member, and reports whether it had one. It is for the group of a process
// whose main pid has already been reaped (what its run left behind): the
// group id cannot be reused while a member is alive, and the check and the
// signal are made under the reap lock, so that no orphan of the group is
// reaped between them. A member the wrapper may not signal (another uid)
// still counts as one.
func (r *Reaper) SignalGroup(pgid int, sig syscall.Signal) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch err := syscall.Kill(-pgid, sig); {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.ESRCH): // no member left
		return false, nil
	default: // EPERM: members the wrapper may not signal
		return true, fmt.Errorf("kill(%d, %s): %w", -pgid, sig, err)
	}
}

// GroupMembers returns the pids of process group pgid, zombies included
// (from /proc: for logs and status, not for deciding whom to signal).
func GroupMembers(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pg, err := pgrpOf(pid); err == nil && pg == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// OrphanReaped returns a channel that is closed when the next orphan is
// reaped: a process group left behind may have become empty.
func (r *Reaper) OrphanReaped() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reaped
}

// Orphans counts the processes reaped that nobody had registered.
func (r *Reaper) Orphans() uint64 { return r.orphans.Load() }

// remember keeps an orphan's exit for a late Adopt, bounded.
func (r *Reaper) remember(e Exit) {
	if len(r.order) >= recentOrphans {
		delete(r.recent, r.order[0])
		r.order = r.order[1:]
	}
	r.recent[e.Pid] = e
	r.order = append(r.order, e.Pid)
}

// Run reaps until ctx ends. Each SIGCHLD triggers a loop of
// wait4(-1, WNOHANG|WUNTRACED|WCONTINUED) until no changed child is left: a
// child stopped or continued by a signal is reported to its watcher, and
// an exited one reaped.
func (r *Reaper) Run(ctx context.Context) {
	defer signal.Stop(r.sigs)
	r.reapAll() // children that exited before Run started
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.sigs:
			r.reapAll()
		}
	}
}

func (r *Reaper) reapAll() {
	for {
		var e Exit
		r.mu.Lock()
		pid, err := syscall.Wait4(-1, &e.Status, syscall.WNOHANG|syscall.WUNTRACED|syscall.WCONTINUED, &e.Rusage)
		if errors.Is(err, syscall.EINTR) {
			r.mu.Unlock()
			continue
		}
		if err != nil || pid <= 0 {
			r.mu.Unlock()
			return
		}
		e.Pid = pid
		if e.Status.Stopped() || e.Status.Continued() {
			w := r.waiting[pid]
			r.mu.Unlock()
			if w.onPause != nil {
				w.onPause(Pause{Stopped: e.Status.Stopped(), Signal: stopSignal(e.Status)})
			}
			continue
		}
		w, ok := r.waiting[pid]
		delete(r.waiting, pid)
		if fd, has := r.pidfds[pid]; has {
			syscall.Close(fd)
			delete(r.pidfds, pid)
		}
		if !ok {
			r.remember(e)
			close(r.reaped)
			r.reaped = make(chan struct{})
		}
		r.mu.Unlock()
		if ok {
			w.exit <- e // buffered: never blocks
		} else {
			r.orphans.Add(1)
			if r.OnOrphan != nil {
				r.OnOrphan(e)
			}
		}
	}
}

// stopSignal is the signal that stopped a child (0 for a continue).
func stopSignal(s syscall.WaitStatus) syscall.Signal {
	if s.Stopped() {
		return s.StopSignal()
	}
	return 0
}
