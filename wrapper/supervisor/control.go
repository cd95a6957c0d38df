package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
	"github.com/process-wrapper/process-wrapper/wrapper/events"
	"github.com/process-wrapper/process-wrapper/wrapper/probe"
	"github.com/process-wrapper/process-wrapper/wrapper/reaper"
	"github.com/process-wrapper/process-wrapper/wrapper/state"
	"github.com/process-wrapper/process-wrapper/wrapper/tail"
)

// The operations of the control API on one process. Each asks the
// process's runner to act and waits until it has: the runner stays the
// only owner of its process, so every rule (preStop, the deadline,
// leftovers, dependencies) holds for an operator's action as for the
// wrapper's own.
//
// A process stopped by request is held: not ready, live, its exit not
// counted, keeping the wrapper running, until a start.

// Errors of the operations.
var (
	ErrUnknown      = errors.New("no such process")
	ErrShuttingDown = errors.New("the wrapper is shutting down")
)

// ConflictError is an action that does not apply to the process as it is.
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string { return e.Msg }

// stopRequested is closed once a stop is asked, until the next start.
func (r *runner) stopRequested() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopCh
}

func (r *runner) stopAsked() bool {
	select {
	case <-r.stopRequested():
		return true
	default:
		return false
	}
}

// hold keeps a process stopped by request until a start (true) or the
// shutdown (false). What its last run left in its groups is stopped first.
func (r *runner) hold(groups []int) bool {
	s := r.sup
	if l := r.stopLeftovers(groups); len(l.pgids) > 0 {
		grace := time.NewTimer(s.opt.Deadline)
		s.awaitGroups(l, grace.C)
		grace.Stop()
	}
	select {
	case <-r.startCh: // a start that came before this stop
	default:
	}
	r.mu.Lock()
	by := r.stopBy
	r.mu.Unlock()
	r.log().Info("process stopped by request: it stays stopped until a start", "process", r.p.Name, "by", by)
	r.setState(func(p *state.Process) {
		p.Phase, p.Pid, p.Held, p.LiveFailed, p.ProbeReason, p.Leftovers = state.Stopped, 0, true, false, "", 0
		p.Reason = "stopped by request of " + by
	})
	r.closeDown() // its dependencies need not wait for it at the shutdown
	select {
	case <-r.startCh:
		r.reopenDown()
		r.setState(func(p *state.Process) { p.Held, p.Phase, p.Reason = false, state.Pending, "" })
		return true
	case <-s.stopping:
		r.setState(func(p *state.Process) {
			p.Held, p.Reason = false, "stopped by request of "+by+"; then the wrapper shut down"
		})
		return false
	}
}

// stopRequestedRun stops the running process for a stop request, as a
// liveness failure stops it: preStop, stop signal, SIGKILL after the
// deadline.
//
//go:noinline
func (r *runner) stopRequestedRun(pid int, exitCh <-chan reaper.Exit, e *reaper.Exit) {
	r.mu.Lock()
	by := r.stopBy
	r.mu.Unlock()
	r.log().Info("stopping process by request", "process", r.p.Name, "pid", pid, "by", by)
	r.setState(func(p *state.Process) { p.Phase, p.Reason = state.Stopping, "stopping by request of "+by })
	timer := time.NewTimer(r.sup.opt.Deadline)
	defer timer.Stop()
	*e = r.stop(pid, exitCh, timer.C)
}

// find returns the runner of process name.
func (s *Supervisor) find(name string) (*runner, error) {
	for _, r := range s.runners {
		if r.p.Name == name {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknown, name)
}

// act checks that the wrapper is not shutting down, serialises the actions
// on one process, logs who asked, and tells the observer of each action
// that was done.
func (s *Supervisor) act(r *runner, action, by string, f func() error) error {
	r.ctlMu.Lock()
	defer r.ctlMu.Unlock()
	if s.opt.State.Stopping() {
		return ErrShuttingDown
	}
	s.opt.Log.Info("control request", "process", r.p.Name, "action", action, "by", by)
	if err := f(); err != nil {
		s.opt.Log.Warn("control request failed", "process", r.p.Name, "action", action, "by", by, "err", err)
		return err
	}
	s.emit(&events.Event{Kind: events.ControlAction, Process: r.p.Name, Reason: action + " by " + by})
	return nil
}

// StopProcess stops process name as the shutdown would (preStop, stop
// signal, SIGKILL at the deadline) and holds it stopped until
// StartProcess. With dependents, the processes that depend on it,
// transitively, stop first, in reverse order. It returns once they are
// stopped, or when ctx ends.
func (s *Supervisor) StopProcess(ctx context.Context, name string, dependents bool, by string) error {
	r, err := s.find(name)
	if err != nil {
		return err
	}
	action := "stop"
	if dependents {
		action = "stop with its dependents"
	}
	return s.act(r, action, by, func() error {
		if !dependents {
			return s.stopOne(ctx, r, by, true)
		}
		// X already stopped by request is fine here: its dependents are
		// what is left to stop
		if p, _ := s.opt.State.Get(name); !p.Held && !s.active(r) {
			return &ConflictError{fmt.Sprintf("%s is not running: %s", name, p.Phase)}
		}
		return s.stopTree(ctx, r, by)
	})
}

// stopOne asks r to stop and waits until it is held; strict: a process
// that is not running or waiting is a conflict.
func (s *Supervisor) stopOne(ctx context.Context, r *runner, by string, strict bool) error {
	p, _ := s.opt.State.Get(r.p.Name)
	switch {
	case p.Held:
		if strict {
			return &ConflictError{fmt.Sprintf("%s is already stopped by request", r.p.Name)}
		}
		return nil
	case !s.active(r):
		if strict {
			return &ConflictError{fmt.Sprintf("%s is not running: %s", r.p.Name, p.Phase)}
		}
		return nil
	}
	r.mu.Lock()
	select {
	case <-r.stopCh:
	default:
		r.stopBy = by
		close(r.stopCh)
	}
	r.mu.Unlock()
	return s.await(ctx, r, func(p state.Process) bool { return p.Held || p.Phase == state.Completed || p.Phase == state.Failed })
}

// stopTree stops r's dependents, level by level from the farthest, each
// level in parallel, then r.
func (s *Supervisor) stopTree(ctx context.Context, r *runner, by string) error {
	// the depth of each dependent: one more than what it depends on in
	// the tree; the deepest stop first
	depth := map[*runner]int{r: 0}
	var walk func(x *runner)
	walk = func(x *runner) {
		for _, d := range x.dependents {
			if depth[d] < depth[x]+1 {
				depth[d] = depth[x] + 1
				walk(d)
			}
		}
	}
	walk(r)
	deepest := 0
	for _, d := range depth {
		deepest = max(deepest, d)
	}
	for level := deepest; level >= 0; level-- {
		errs := make(chan error, len(depth))
		n := 0
		for x, d := range depth {
			if d != level {
				continue
			}
			n++
			go func() { errs <- s.stopOne(ctx, x, by, false) }()
		}
		var first error
		for range n {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		if first != nil {
			return first
		}
	}
	return nil
}

// StartProcess starts a process held by a stop request, one waiting for
// its restart (at once, not at the backoff's end), or one that has ended
// (completed or failed for good) while the wrapper runs. Its start
// waits for its dependsOn conditions, as at the wrapper's start. It
// returns once the runner has taken the start: the process is then
// pending, starting or running.
func (s *Supervisor) StartProcess(ctx context.Context, name, by string) error {
	r, err := s.find(name)
	if err != nil {
		return err
	}
	return s.act(r, "start", by, func() error { return s.startOne(ctx, r) })
}

func (s *Supervisor) startOne(ctx context.Context, r *runner) error {
	p, _ := s.opt.State.Get(r.p.Name)
	r.mu.Lock()
	runs := r.runs
	r.mu.Unlock()
	switch {
	case p.Held:
		r.mu.Lock()
		r.stopCh = make(chan struct{})
		r.mu.Unlock()
		select {
		case r.startCh <- struct{}{}:
		default:
		}
	case p.Phase == state.Backoff && s.active(r):
		// waiting to be restarted: now, not at the backoff's end
		select {
		case r.startCh <- struct{}{}:
		default:
		}
	case s.active(r):
		return &ConflictError{fmt.Sprintf("%s is already %s", r.p.Name, p.Phase)}
	default:
		if !s.revive(r) {
			return ErrShuttingDown
		}
	}
	// until it runs (a run began), waits (for a dependency or its lock,
	// with the reason), or could not start (failed, backoff)
	return s.await(ctx, r, func(p state.Process) bool {
		r.mu.Lock()
		ran := r.runs > runs
		r.mu.Unlock()
		switch {
		case p.Held:
			return false
		case ran:
			return p.Phase != state.Starting
		case p.Phase == state.Pending || p.Phase == state.Starting:
			return p.Reason != ""
		}
		return p.Phase == state.Failed || p.Phase == state.Backoff
	})
}

// RestartProcess stops the process (alone) and starts it again; one that
// is held or has ended is only started.
func (s *Supervisor) RestartProcess(ctx context.Context, name, by string) error {
	r, err := s.find(name)
	if err != nil {
		return err
	}
	return s.act(r, "restart", by, func() error {
		if p, _ := s.opt.State.Get(name); s.active(r) && !p.Held {
			if err := s.stopOne(ctx, r, by, false); err != nil {
				return err
			}
		}
		return s.startOne(ctx, r)
	})
}

// SignalProcess sends sig to the main pid of the running process.
func (s *Supervisor) SignalProcess(name string, sig syscall.Signal, by string) error {
	r, err := s.find(name)
	if err != nil {
		return err
	}
	return s.act(r, "signal "+config.SignalName(sig), by, func() error {
		r.mu.Lock()
		pid := r.pid
		r.mu.Unlock()
		if pid == 0 {
			p, _ := s.opt.State.Get(name)
			return &ConflictError{fmt.Sprintf("%s is not running: %s", name, p.Phase)}
		}
		if err := s.opt.Reaper.Signal(pid, sig, false); err != nil {
			if errors.Is(err, os.ErrProcessDone) {
				return &ConflictError{fmt.Sprintf("%s has just exited", name)}
			}
			return err
		}
		s.opt.Log.Info("sent signal by request", "process", name, "pid", pid, "signal", config.SignalName(sig), "by", by)
		return nil
	})
}

// await waits until the process's status satisfies done, the shutdown
// begins, or ctx ends.
func (s *Supervisor) await(ctx context.Context, r *runner, done func(state.Process) bool) error {
	for {
		p, _, changed := s.opt.State.WatchOne(r.p.Name)
		if done(p) {
			return nil
		}
		select {
		case <-changed:
		case <-s.stopping:
			return ErrShuttingDown
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (it is %s)", r.p.Name, ctx.Err(), p.Phase)
		}
	}
}

// active reports whether r's goroutine runs: the process runs, waits or is
// held, as opposed to having ended for good.
func (s *Supervisor) active(r *runner) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return r.active
}

// revive runs again a runner that has ended, unless the wrapper is ending.
func (s *Supervisor) revive(r *runner) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.live == 0 || r.active {
		return false
	}
	r.mu.Lock()
	r.stopCh = make(chan struct{})
	r.restarts = nil
	r.mu.Unlock()
	r.reopenDown()
	s.opt.State.Update(r.p.Name, func(p *state.Process) { p.Phase, p.Reason = state.Pending, "" })
	s.goRun(r)
	return true
}

// goRun starts r's goroutine; under s.mu.
func (s *Supervisor) goRun(r *runner) {
	r.active = true
	s.live++
	go func() {
		r.run()
		s.mu.Lock()
		defer s.mu.Unlock()
		r.active = false
		if s.live--; s.live == 0 {
			close(s.idle)
		}
	}()
}

// Detail is what the control API shows of one process.
type Detail struct {
	state.Process
	Runs       int // runs started
	Probes     []ProbeDetail
	DependsOn  []EdgeDetail
	Dependents []string
}

// ProbeDetail is the last result of one probe.
type ProbeDetail struct {
	Type, Kind string
	Checks     int
	OK         bool
	Reason     string
	At         time.Time // of the last check; zero before any
}

// EdgeDetail is one dependsOn edge and whether it holds now.
type EdgeDetail struct {
	Name      string
	Condition config.Condition
	Timeout   time.Duration
	Met       bool
}

// Lines returns the last lines of process name, and its followers.
func (s *Supervisor) Lines(name string) (*tail.Tail, error) {
	r, err := s.find(name)
	if err != nil {
		return nil, err
	}
	return r.lines, nil
}

// Details returns every process, in config order.
func (s *Supervisor) Details() []Detail {
	procs, _ := s.opt.State.Snapshot()
	out := make([]Detail, len(procs))
	for i, r := range s.runners {
		out[i] = r.detail(procs[i])
	}
	return out
}

// Detail returns process name.
func (s *Supervisor) Detail(name string) (Detail, error) {
	r, err := s.find(name)
	if err != nil {
		return Detail{}, err
	}
	p, _ := s.opt.State.Get(name)
	return r.detail(p), nil
}

func (r *runner) detail(p state.Process) Detail {
	r.mu.Lock()
	d := Detail{Process: p, Runs: r.runs}
	r.mu.Unlock()
	for _, spec := range []*probeSpec{r.probes.startup, r.probes.readiness, r.probes.liveness} {
		if spec == nil {
			continue
		}
		spec.mu.Lock()
		last, at := spec.last, spec.at
		spec.mu.Unlock()
		pd := ProbeDetail{Type: spec.typ.String(), Kind: spec.cfg.Kind, Checks: last.Checks, OK: last.OK, Reason: last.Reason, At: at}
		d.Probes = append(d.Probes, pd)
	}
	for i := range r.deps {
		e := &r.deps[i]
		met, _ := e.check()
		d.DependsOn = append(d.DependsOn, EdgeDetail{Name: e.Name, Condition: e.Condition, Timeout: e.Timeout, Met: met})
	}
	for _, x := range r.dependents {
		d.Dependents = append(d.Dependents, x.p.Name)
	}
	return d
}

// recordProbe keeps a probe's last result for Detail.
func (spec *probeSpec) recordProbe(res probe.Result) {
	spec.mu.Lock()
	spec.last, spec.at = res, time.Now()
	spec.mu.Unlock()
}
