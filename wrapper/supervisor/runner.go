package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/wrapper/config"
	"github.com/process-wrapper/process-wrapper/wrapper/events"
	"github.com/process-wrapper/process-wrapper/wrapper/lockclient"
	"github.com/process-wrapper/process-wrapper/wrapper/probe"
	"github.com/process-wrapper/process-wrapper/wrapper/reaper"
	"github.com/process-wrapper/process-wrapper/wrapper/relay"
	"github.com/process-wrapper/process-wrapper/wrapper/state"
	"github.com/process-wrapper/process-wrapper/wrapper/tail"
)

// runner owns the life of one process: only its goroutine starts, restarts
// and waits for it.
type runner struct {
	sup    *Supervisor
	p      *config.Process
	stdout *relay.Source
	stderr *relay.Source
	lines  *tail.Tail // its last lines (its preStop's too), for ctl logs
	// the preStop command's streams, when it has one
	hookOut, hookErr *relay.Source

	relays sync.WaitGroup // relay goroutines of every start, owned here

	probes     probeSet
	heartbeats bool   // a heartBeat probe without a file: beats come over HTTP
	pidFile    string // a floatingPid probe's: the daemon whose pid it holds is the process

	mu    sync.Mutex
	pid   int             // main pid while running, 0 otherwise
	env   []string        // environment of the current run, for probes
	pipes []*relay.Stream // streams still being relayed
	// forking: a start is between its fork and the recording of the pid;
	// a signal to forward that comes then (the child may send one to PID 1
	// at once) is held and sent once the pid is known
	forking bool
	held    []syscall.Signal

	graphNode
	restarts []time.Time // of the budget's window, when the process has one

	// control requests (see control.go): stopCh is closed when a stop is
	// asked (every wait of the runner watches it) and made anew by the
	// start that ends the hold; startCh wakes a held or backing-off runner
	stopCh  chan struct{}
	stopBy  string // who asked for the stop
	startCh chan struct{}
	runs    int        // runs started, for the control API
	ctlMu   sync.Mutex // one control action at a time
	active  bool       // its goroutine runs (under sup.mu)
}

func newRunner(s *Supervisor, p *config.Process) (*runner, error) {
	labels := make([]logline.Label, len(p.LogLabels))
	for i, kv := range p.LogLabels {
		labels[i] = logline.Label{Key: kv.Key, Value: kv.Value}
	}
	lines := &tail.Tail{}
	src := func(stream string, lvl logline.Level, labels []logline.Label) *relay.Source {
		return &relay.Source{Format: s.opt.Format, Line: logline.NewLineFormat(p.Name, stream, labels), Level: lvl, Out: s.opt.Out, Tap: lines}
	}
	// stderr lines are level=error unless the line says otherwise (auto), as
	// GKE's logging agent reads unstructured stderr.
	r := &runner{sup: s, p: p, lines: lines, stdout: src("stdout", logline.Info, labels), stderr: src("stderr", logline.Error, labels)}
	if p.PreStop != nil && p.PreStop.Exec != nil {
		// the preStop command's lines are the process's, marked
		hook := append([]logline.Label{{Key: "hook", Value: "preStop"}}, labels...)
		r.hookOut, r.hookErr = src("stdout", logline.Info, hook), src("stderr", logline.Error, hook)
	}
	r.down = make(chan struct{})
	r.stopCh, r.startCh = make(chan struct{}), make(chan struct{}, 1)
	var err error
	r.probes, err = newProbeSet(p, &probe.Target{
		Process: p.Name,
		Environ: r.environ,
		Reaper:  s.opt.Reaper,
		Beats:   s.opt.Beats,
		AMQP:    s.opt.AMQP,
	})
	if err != nil {
		return nil, fmt.Errorf("process %q: %w", p.Name, err)
	}
	for _, pr := range []*config.Probe{p.Startup, p.Readiness, p.Liveness} {
		if pr != nil && pr.HeartBeat != nil && pr.HeartBeat.File == "" {
			r.heartbeats = true
		}
		if pr != nil && pr.FloatingPid != nil {
			if r.pidFile != "" && r.pidFile != pr.FloatingPid.PidFile {
				return nil, fmt.Errorf("process %q: floatingPid probes name two pid files", p.Name)
			}
			r.pidFile = pr.FloatingPid.PidFile
		}
	}
	if r.pidFile != "" && !s.opt.Reaps {
		return nil, fmt.Errorf("process %q: a floatingPid probe needs the wrapper to be PID 1 or a child subreaper, so that the daemon becomes its child", p.Name)
	}
	return r, nil
}

// environ returns the environment of the current run.
func (r *runner) environ() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.env
}

func (r *runner) log() *logline.Logger { return r.sup.opt.Log }

// run is the process's state machine. It returns when the process has
// ended for good: completed, failed, or stopped by the shutdown.
func (r *runner) run() {
	defer r.closeDown()
	s := r.sup
	delay := s.opt.Backoff.Initial
	restarts, lastCode, lastBad := 0, 0, 0
	for {
		switch r.gate(restarts, lastCode, lastBad) {
		case again:
			continue
		case end:
			return
		}
		r.setState(func(p *state.Process) { p.Phase, p.Restarts = state.Starting, restarts })
		var lease *lockclient.Lease
		if r.p.SharedLock != nil {
			l, ok := r.acquireLock()
			if !ok {
				if r.stopAsked() {
					continue // the loop's top holds it
				}
				r.neverStarted(restarts, lastCode, "wrapper shut down while waiting for the shared lock")
				return
			}
			lease = &l
		}
		started := time.Now()
		code, stopped, why, groups := r.once(lease)
		lastCode = code
		ran := time.Since(started)
		if why == events.RestartRequested {
			// stopped by request: its exit does not count, and it
			// waits for a start
			if !r.hold(groups) {
				return
			}
			continue
		}
		if code != 0 {
			lastBad = code
		}
		if stopped {
			s.record(code)
			r.setState(func(p *state.Process) {
				p.Phase, p.Pid, p.ExitCode, p.Reason = state.Stopped, 0, code, "stopped at shutdown"
			})
			r.closeDown()
			if l := r.stopLeftovers(groups); len(l.pgids) > 0 {
				s.awaitGroups(l, nil) // until they are gone, or the shutdown's deadline
			}
			return
		}
		restart := false
		switch r.p.RestartPolicy {
		case config.Always:
			restart = true
		case config.OnFailure:
			restart = code != 0
		}
		if !restart {
			r.ended(code, groups)
			return
		}
		if ran >= s.opt.Backoff.ResetAfter {
			delay = s.opt.Backoff.Initial
		}
		switch r.backoff(code, lastBad, delay, restarts, why, groups) {
		case again:
			continue
		case end:
			return
		}
		restarts++
		delay = min(2*delay, s.opt.Backoff.Max)
	}
}

// backoff is what comes between a run that exited and the next: the
// restart budget, then the delay, during which what the last run left in
// its group is stopped; a stop request holds the process, a start request
// ends the delay.
//
//go:noinline
func (r *runner) backoff(code, lastBad int, delay time.Duration, restarts int, why string, groups []int) int {
	s := r.sup
	if spent := r.spendRestart(cmp.Or(lastBad, 1)); spent != "" {
		r.keepLeftovers(groups)
		r.failedForGood(cmp.Or(lastBad, 1), spent)
		return end
	}
	r.restarting(code, delay, restarts, why)
	// the next run starts once the backoff is over and what the last
	// run left in its group has ended (stop signal now, SIGKILL at the
	// deadline)
	leftDone := make(chan struct{})
	if l := r.stopLeftovers(groups); len(l.pgids) > 0 {
		go func() {
			defer close(leftDone)
			grace := time.NewTimer(s.opt.Deadline)
			defer grace.Stop()
			s.awaitGroups(l, grace.C)
			r.setState(func(p *state.Process) { p.Leftovers = 0 })
		}()
	} else {
		close(leftDone)
	}
	t := time.NewTimer(delay)
	select {
	case <-t.C:
	case <-r.startCh: // started by request: no more backoff
		t.Stop()
	case <-r.stopRequested():
		t.Stop()
		<-leftDone
		if !r.hold(nil) {
			return end
		}
		return again
	case <-s.stopping:
		t.Stop()
		<-leftDone // the shutdown's deadline bounds it
		// its last run is how it ended
		s.record(code)
		r.setState(func(p *state.Process) { p.Phase, p.Reason = state.Stopped, "stopped at shutdown during backoff" })
		return end
	}
	select {
	case <-leftDone:
	default:
		r.setState(func(p *state.Process) {
			p.Reason = fmt.Sprintf("exited %d, restarting once what its last run left in its process group has ended", code)
		})
		<-leftDone
	}
	return proceed
}

// What gate lets a run do.
const (
	proceed = iota // start it
	again          // the loop's top again (a hold ended in a start)
	end            // the runner ends
)

// gate is what comes before each run: the shutdown, a stop request (the
// process is held until a start), the dependsOn edges (pending until they
// hold, or failed for good when one cannot).
//
//go:noinline
func (r *runner) gate(restarts, lastCode, lastBad int) int {
	select {
	case <-r.sup.stopping:
		r.neverStarted(restarts, lastCode, "wrapper shut down before start")
		return end
	case <-r.stopRequested():
		if !r.hold(nil) {
			return end
		}
		return again
	default:
	}
	if len(r.deps) == 0 {
		return proceed
	}
	why, stopped, held := r.awaitDeps()
	switch {
	case stopped:
		r.neverStarted(restarts, lastCode, "wrapper shut down while waiting for its dependencies")
		return end
	case held:
		return again // the loop's top holds it
	case why != "":
		r.failedForGood(cmp.Or(lastBad, 1), why)
		return end
	}
	return proceed
}

// once starts the process and waits for its exit. It returns the exit code,
// whether the exit came after the shutdown began, why the run ended (a
// restart reason of package events), and the process groups of the run
// (for what it may have left behind).
func (r *runner) once(lease *lockclient.Lease) (code int, stopped bool, why string, groups []int) {
	s := r.sup
	exitCh, pid, err := r.startApart()
	var k *keeper
	if lease != nil {
		// the lock goes back at the moment the config names; until then
		// it is renewed, and its loss stops the process
		switch {
		case err != nil || r.holdUntil() == config.HoldUntilStarted:
			r.releaseLock(*lease)
		default:
			k = r.keep(*lease, r.p.SharedLock.TTL, r.holdUntil() == config.HoldUntilReady)
			defer func() {
				k.stop()
				if !k.released {
					r.releaseLock(*lease)
				}
			}()
		}
	}
	if err != nil {
		return r.startFailed(err), false, events.RestartStart, nil
	}
	groups = []int{pid} // its own group, made at the start
	began := time.Now()
	r.running(pid)
	pctx, cancelProbes := context.WithCancel(context.Background())
	var probes sync.WaitGroup
	unhealthy := make(chan restartRequest, 1)
	r.runProbes(pctx, &probes, unhealthy)
	defer func() { cancelProbes(); probes.Wait() }()

	var e reaper.Exit
	adopted := false
	why = events.RestartExit
wait:
	select {
	case e = <-exitCh:
		if r.pidFile != "" && !adopted && e.Code() == 0 {
			// the process forked its daemon and exited: follow the daemon
			dpid, dch, ok := r.followDaemon(pctx, pid, &groups)
			if !ok {
				e = reaper.Exit{Pid: pid, Status: syscall.WaitStatus(1 << 8)} // exit code 1
				break
			}
			pid, exitCh, adopted = dpid, dch, true
			goto wait
		}
	// each stop writes its exit into e: an exit returned by value would
	// take a temporary of its own in this frame for each of them
	case <-s.stopping:
		stopped = true
		r.shutdownStop(pid, exitCh, &e)
	case <-r.stopRequested():
		cancelProbes()
		why = events.RestartRequested
		r.stopRequestedRun(pid, exitCh, &e)
	case lost := <-k.lostCh():
		cancelProbes()
		why = events.RestartLockLost
		r.lockLost(&lost, pid, exitCh, &e)
	case u := <-unhealthy:
		cancelProbes()
		why = u.cause
		r.stopUnhealthy(&u, pid, exitCh, &e)
	}
	r.exited(pid, &e, stopped, began)
	return e.Code(), stopped, why, groups
}

// The steps of a run here are functions of their own, not inlined into run
// and once: the runner's goroutine waits in once for the whole life of the
// process, and what their calls need (log fields, events) would otherwise
// be part of its frame for all that time. With a thousand processes that
// stack is what an idle one costs most.

// ended records that the process ended for good (completed or failed).
//
//go:noinline
func (r *runner) ended(code int, groups []int) {
	r.keepLeftovers(groups)
	if code != 0 {
		r.log().Error("process failed", "process", r.p.Name, "code", code, "restartPolicy", string(r.p.RestartPolicy))
		r.final(state.Failed, code, fmt.Sprintf("exited %d under restartPolicy %s", code, r.p.RestartPolicy))
		return
	}
	r.log().Info("process completed", "process", r.p.Name)
	r.final(state.Completed, 0, "exited 0")
}

// failedForGood ends a process that will not run again although its
// restartPolicy would run it: its restart budget is spent, or what it
// depends on can never be met. code is its last non-zero exit code, or 1.
//
//go:noinline
func (r *runner) failedForGood(code int, why string) {
	r.log().Error("process failed for good", "process", r.p.Name, "code", code, "reason", why)
	r.final(state.Failed, code, why)
}

// final records that the process reached a final state; an essential
// one then ends the wrapper with its code.
func (r *runner) final(phase state.Phase, code int, why string) {
	r.sup.record(code)
	r.setState(func(p *state.Process) {
		p.Phase, p.Pid, p.ExitCode, p.Reason = phase, 0, code, why
		if phase == state.Completed {
			p.LiveFailed = false
		}
	})
	if r.p.Essential {
		r.sup.essentialEnded(r.p.Name, code, why)
	}
}

// spendRestart takes one restart from the process's budget, or returns
// why the budget is spent (code is then the process's).
func (r *runner) spendRestart(code int) string {
	b := r.p.Budget
	if b == nil {
		return ""
	}
	now := time.Now()
	kept := r.restarts[:0]
	for _, t := range r.restarts {
		if now.Sub(t) < b.Window {
			kept = append(kept, t)
		}
	}
	r.restarts = kept
	if len(kept) >= b.Max {
		why := fmt.Sprintf("restart budget spent: %d restarts within %s (maxRestarts %d)", len(kept), b.Window, b.Max)
		r.sup.emit(&events.Event{Kind: events.RestartBudgetSpent, Process: r.p.Name, Code: code, Reason: why})
		return why
	}
	r.restarts = append(r.restarts, now)
	return ""
}

// restarting announces the restart to come after delay.
//
//go:noinline
func (r *runner) restarting(code int, delay time.Duration, restarts int, why string) {
	r.log().Info("restarting process", "process", r.p.Name, "in", delay.String(), "code", code, "restarts", restarts+1, "reason", why)
	r.sup.emit(&events.Event{Kind: events.ProcessRestart, Process: r.p.Name, Code: code, Reason: why})
	r.setState(func(p *state.Process) {
		p.Phase, p.Pid, p.ExitCode = state.Backoff, 0, code
		p.Reason = fmt.Sprintf("exited %d, restarting in %s", code, delay)
	})
}

// startFailed reports a start that failed and returns its exit code.
//
//go:noinline
func (r *runner) startFailed(err error) int {
	code := startErrorCode(err)
	r.log().Error("start failed", "process", r.p.Name, "code", code, "err", err)
	r.setState(func(p *state.Process) { p.Reason = err.Error() })
	return code
}

// running reports a run that started.
//
//go:noinline
func (r *runner) running(pid int) {
	r.log().Info("process started", "process", r.p.Name, "pid", pid)
	r.sup.emit(&events.Event{Kind: events.ProcessStart, Process: r.p.Name, Pid: pid})
	r.mu.Lock()
	r.runs++
	r.mu.Unlock()
	r.setState(func(p *state.Process) {
		p.Phase, p.Pid, p.Reason, p.Suspended, p.Leftovers = state.Running, pid, "", false, 0
		p.Started, p.ProbeReady = r.probes.startup == nil, r.probes.readiness == nil
		p.LiveFailed, p.ProbeReason = false, ""
	})
}

// followDaemon follows the daemon that a process with a floatingPid probe
// forked before it exited 0: its pid, and the channel of its exit.
//
//go:noinline
func (r *runner) followDaemon(ctx context.Context, parent int, groups *[]int) (int, <-chan reaper.Exit, bool) {
	dpid, dch, err := r.adopt(ctx)
	if err != nil {
		r.log().Error("cannot follow the daemon of the process", "process", r.p.Name, "pid_file", r.pidFile, "err", err)
		r.setState(func(p *state.Process) { p.Reason = err.Error() })
		return 0, nil, false
	}
	r.log().Info("following the daemon's pid", "process", r.p.Name, "pid", dpid, "parent", parent, "pid_file", r.pidFile)
	if pg, err := syscall.Getpgid(dpid); err == nil && pg == dpid {
		*groups = append(*groups, dpid) // the daemon leads a group of its own
	}
	r.mu.Lock()
	r.pid = dpid
	r.mu.Unlock()
	r.setState(func(p *state.Process) { p.Pid = dpid })
	return dpid, dch, true
}

// lockLost stops the process whose shared lock was lost: another holder
// may take the lock after its TTL, so the process must be dead by then and
// the grace ends at the lease's end.
//
//go:noinline
func (r *runner) lockLost(lost *lostLock, pid int, exitCh <-chan reaper.Exit, e *reaper.Exit) {
	r.log().Error("shared lock lost: stopping process", "process", r.p.Name, "lock", r.p.SharedLock.Name, "reason", lost.reason)
	r.setState(func(p *state.Process) { p.Reason = "shared lock lost: " + lost.reason })
	timer := time.NewTimer(time.Until(lost.deadline))
	defer timer.Stop()
	*e = r.stop(pid, exitCh, timer.C)
}

// shutdownStop stops the process at the shutdown, once what depends on
// it has exited.
//
//go:noinline
func (r *runner) shutdownStop(pid int, exitCh <-chan reaper.Exit, e *reaper.Exit) {
	r.setState(func(p *state.Process) { p.Phase = state.Stopping })
	if r.awaitDependents(pid, exitCh, e) {
		return
	}
	*e = r.stop(pid, exitCh, nil)
}

// stopUnhealthy stops a process as kubelet does a container whose probe
// failed: stop signal, then SIGKILL after the grace period; the restart
// policy decides what follows.
//
//go:noinline
func (r *runner) stopUnhealthy(u *restartRequest, pid int, exitCh <-chan reaper.Exit, e *reaper.Exit) {
	timer := time.NewTimer(r.sup.opt.Deadline)
	*e = r.stop(pid, exitCh, timer.C)
	timer.Stop()
	r.log().Info("stopped unhealthy process", "process", r.p.Name, "reason", u.reason)
}

// exited reports the end of a run.
//
//go:noinline
func (r *runner) exited(pid int, e *reaper.Exit, stopped bool, began time.Time) {
	r.mu.Lock()
	r.pid = 0
	r.mu.Unlock()
	code := e.Code()
	r.setState(func(p *state.Process) { p.Suspended, p.ExitCode, p.ExitedAt = false, code, time.Now() })
	level := r.log().Info
	if e.Code() != 0 && !stopped {
		level = r.log().Warn
	}
	level("process exited", "process", r.p.Name, "pid", pid, "code", e.Code(), "exit", e.String())
	r.sup.emit(&events.Event{Kind: events.ProcessExit, Process: r.p.Name, Pid: pid, Code: e.Code(), Elapsed: time.Since(began), Rusage: &e.Rusage})
}

// neverStarted ends a runner whose next run never started because the
// shutdown came first. A process that never ran counts as ended by the
// signal that stopped the wrapper (128+N), as it would had it run and
// been killed by it; one that ran before counts by its last run.
func (r *runner) neverStarted(restarts, lastCode int, why string) {
	code := lastCode
	if restarts == 0 {
		code = 128 + int(r.sup.stopCause())
	}
	r.sup.record(code)
	r.setState(func(p *state.Process) { p.Phase, p.Reason = state.Stopped, why })
}

// stopLeftovers sends the process's stop signal (then SIGCONT) to what a
// run left in its groups, and returns the groups that had members.
func (r *runner) stopLeftovers(groups []int) leftovers {
	l := leftovers{process: r.p.Name, pgids: groups, sig: r.p.StopSignal}
	if l.pgids = r.sup.alive(groups); len(l.pgids) == 0 {
		return l
	}
	n := r.countLeftovers(l.pgids)
	r.log().Info("stopping what the process left in its process group", "process", r.p.Name, "processes", n, "signal", config.SignalName(r.p.StopSignal))
	l.pgids = r.sup.stopGroups(l)
	return l
}

// keepLeftovers leaves what a process that ended for good left in its
// groups running until the shutdown.
func (r *runner) keepLeftovers(groups []int) {
	alive := r.sup.alive(groups)
	if len(alive) == 0 {
		return
	}
	n := r.countLeftovers(alive)
	r.log().Info("the process left processes in its process group: they run until the wrapper shuts down", "process", r.p.Name, "processes", n)
	r.sup.keep(leftovers{process: r.p.Name, pgids: alive, sig: r.p.StopSignal})
}

// countLeftovers counts the members of groups and shows them in the state.
func (r *runner) countLeftovers(groups []int) int {
	n := 0
	for _, pg := range groups {
		n += len(reaper.GroupMembers(pg))
	}
	r.setState(func(p *state.Process) { p.Leftovers = n })
	return n
}

// adopt reads the pid file (waiting for it to name a live pid, up to the
// graceful-shutdown deadline) and registers that pid with the reaper.
func (r *runner) adopt(ctx context.Context) (int, <-chan reaper.Exit, error) {
	deadline := time.Now().Add(r.sup.opt.Deadline)
	var last error
	for {
		pid, err := probe.ReadPidFile(r.pidFile)
		if err == nil {
			ch, aerr := r.sup.opt.Reaper.Adopt(pid, r.paused)
			if aerr == nil {
				return pid, ch, nil
			}
			err = aerr
		}
		last = err
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, nil, last
		}
		select {
		case <-ctx.Done():
		case <-r.sup.stopping:
			return 0, nil, fmt.Errorf("shutdown before the daemon was found: %w", last)
		case <-time.After(50 * time.Millisecond): // polling the pid file the daemon is about to write
		}
	}
}

// stop sends the stop signal to the main pid and waits for the exit; at the
// deadline (the shutdown's, or grace when not nil) it SIGKILLs the group.
func (r *runner) stop(pid int, exitCh <-chan reaper.Exit, grace <-chan time.Time) reaper.Exit {
	s := r.sup
	if r.p.PreStop != nil {
		e, exited, late := r.preStop(pid, exitCh, grace)
		switch {
		case exited:
			return e
		case late:
			return r.kill(pid, exitCh)
		}
	}
	r.log().Info("sending stop signal", "process", r.p.Name, "pid", pid, "signal", config.SignalName(r.p.StopSignal))
	if err := s.opt.Reaper.Signal(pid, r.p.StopSignal, false); err != nil && !errors.Is(err, os.ErrProcessDone) {
		r.log().Warn("stop signal failed", "process", r.p.Name, "err", err)
	}
	if contAfter(r.p.StopSignal) {
		_ = s.opt.Reaper.Signal(pid, syscall.SIGCONT, false)
	}
	select {
	case e := <-exitCh:
		return e
	case <-s.kill:
	case <-grace:
	}
	return r.kill(pid, exitCh)
}

// kill SIGKILLs the process's group at the deadline and waits for its exit.
func (r *runner) kill(pid int, exitCh <-chan reaper.Exit) reaper.Exit {
	r.log().Warn("graceful shutdown deadline reached: killing process group", "process", r.p.Name, "pgid", pid)
	if err := r.sup.opt.Reaper.Signal(pid, syscall.SIGKILL, true); err != nil && !errors.Is(err, os.ErrProcessDone) {
		r.log().Warn("kill failed", "process", r.p.Name, "err", err)
	}
	return <-exitCh
}

// startApart runs start on a goroutine of its own: finding the program
// and forking take stack that the runner's goroutine, parked for the whole
// life of the process, would otherwise keep (with a thousand processes, 4
// KiB each).
func (r *runner) startApart() (<-chan reaper.Exit, int, error) {
	type started struct {
		exit <-chan reaper.Exit
		pid  int
		err  error
	}
	done := make(chan started, 1)
	go func() {
		r.sup.starts <- struct{}{}
		defer func() { <-r.sup.starts }()
		exit, pid, err := r.start()
		done <- started{exit, pid, err}
	}()
	s := <-done
	return s.exit, s.pid, s.err
}

// start starts one run of the process with fresh pipes. The write ends go to
// the child and are closed here; the read ends are relayed until their end.
func (r *runner) start() (<-chan reaper.Exit, int, error) {
	env, argv, err := r.p.Environ(r.sup.opt.Environ)
	if err != nil {
		return nil, 0, err
	}
	if err := privilegeError(r.p); err != nil {
		return nil, 0, err
	}
	path, err := r.p.Locate(argv[0], env)
	if err != nil {
		return nil, 0, err
	}
	r.mu.Lock()
	r.forking = true
	r.mu.Unlock()
	pid, exitCh, err := r.spawn(path, argv, env, r.stdout, r.stderr, r.paused)
	r.mu.Lock()
	r.forking = false
	held := r.held
	r.held = nil
	if err == nil {
		r.pid, r.env = pid, env
	}
	r.mu.Unlock()
	if err != nil {
		return nil, 0, err
	}
	for _, sig := range held {
		r.signal(sig)
	}
	return exitCh, pid, nil
}

// spawn starts a program as the process runs (its user, working
// directory and chroot) in a process group of its own, stdin /dev/null, its
// stdout and stderr relayed from out and errs.
func (r *runner) spawn(path string, argv, env []string, out, errs *relay.Source, onPause func(reaper.Pause)) (int, <-chan reaper.Exit, error) {
	devNull, err := reaper.OpenDevNull()
	if err != nil {
		return 0, nil, fmt.Errorf("stdin: %w", err)
	}
	defer syscall.Close(devNull)
	// the read ends are relayed from now on: the child's end of the
	// stream, or its failure to start, closes the write ends
	outW, err := r.pipe(out)
	if err != nil {
		return 0, nil, fmt.Errorf("stdout pipe: %w", err)
	}
	defer outW.Close()
	errW, err := r.pipe(errs)
	if err != nil {
		return 0, nil, fmt.Errorf("stderr pipe: %w", err)
	}
	defer errW.Close()
	// the write ends are blocking, as a child expects its stdout to be,
	// and the wrapper closes them right after the start
	attr := &syscall.ProcAttr{
		Dir:   r.p.WorkingDir,
		Env:   env,
		Files: []uintptr{uintptr(devNull), outW.Fd(), errW.Fd()},
		Sys: &syscall.SysProcAttr{
			Setpgid:    true, // its own group: SIGKILL at the deadline reaches its whole tree
			Credential: r.p.Credential,
			Chroot:     r.p.Chroot,
		},
	}
	return r.sup.opt.Reaper.StartWatched(path, argv, attr, onPause)
}

// pipe makes a pipe for one of the child's streams and relays its read end
// until its end; it returns the write end for the child.
func (r *runner) pipe(src *relay.Source) (*os.File, error) {
	fd, w, err := relay.Pipe()
	if err != nil {
		return nil, err
	}
	r.relays.Add(1)
	r.mu.Lock() // the end, which may come at once, removes st after this adds it
	defer r.mu.Unlock()
	st, err := r.sup.opt.Poller.Relay(src, fd, r.relayEnded)
	if err != nil {
		r.relays.Done()
		syscall.Close(fd)
		w.Close()
		return nil, err
	}
	r.pipes = append(r.pipes, st)
	return w, nil
}

// relayEnded hears that a stream reached its end.
func (r *runner) relayEnded(st *relay.Stream, _ int, err error) {
	defer r.relays.Done()
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		r.log().Warn("log relay ended with an error", "process", r.p.Name, "err", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, p := range r.pipes {
		if p == st {
			r.pipes = append(r.pipes[:i], r.pipes[i+1:]...)
			break
		}
	}
}

// expirePipes bounds the reading of the pipes still open.
func (r *runner) expirePipes(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range r.pipes {
		st.Expire(at)
	}
}

// paused hears from the reaper that the main pid was stopped by a signal
// (a forwarded SIGTSTP, say) or continued.
func (r *runner) paused(p reaper.Pause) {
	r.setState(func(st *state.Process) { st.Suspended = p.Stopped })
	if p.Stopped {
		r.log().Warn("process stopped by a signal: it runs again on SIGCONT", "process", r.p.Name, "signal", config.SignalName(p.Signal))
	} else {
		r.log().Info("process continued", "process", r.p.Name)
	}
}

func (r *runner) signal(sig syscall.Signal) {
	r.mu.Lock()
	pid := r.pid
	if pid == 0 && r.forking {
		r.held = append(r.held, sig)
	}
	r.mu.Unlock()
	if pid == 0 {
		return
	}
	if err := r.sup.opt.Reaper.Signal(pid, sig, false); err == nil {
		r.log().Info("forwarded signal", "process", r.p.Name, "pid", pid, "signal", config.SignalName(sig))
	}
}

// startErrorCode maps a failed start to a shell's codes: 127 for a program
// not found, 126 for one that cannot be executed, 128 otherwise (kubelet's
// code for a container that could not start).
func startErrorCode(err error) int {
	switch {
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return 127
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.ENOEXEC):
		return 126
	}
	return 128
}
