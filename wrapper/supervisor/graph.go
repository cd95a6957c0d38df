package supervisor

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
	"github.com/process-wrapper/process-wrapper/wrapper/events"
	"github.com/process-wrapper/process-wrapper/wrapper/reaper"
	"github.com/process-wrapper/process-wrapper/wrapper/state"
)

// The dependsOn graph: a runner waits, before each run, until the processes
// it depends on meet their conditions; at the shutdown it stops only once
// the processes that depend on it have exited. Each runner keeps what its
// dependents look at (its conditions) beside its state, and wakes them when
// that changes: a change costs the number of its dependents, not the number
// of processes.

// edge is one dependsOn edge, resolved to the runner it waits for.
type edge struct {
	config.Dependency
	to *runner
}

// conds is what a process's dependents can wait for, as of its last change.
type conds struct {
	started   bool // its main pid exists, or it completed
	ready     bool
	final     bool // completed or failed for good
	succeeded bool // completed with 0
	code      int  // its last exit code, once final
}

// graphNode is a runner's part of the graph.
type graphNode struct {
	deps       []edge
	dependents []*runner
	wake       chan struct{} // a dependency's conditions changed (buffered 1)

	cmu   sync.Mutex
	conds conds

	down       chan struct{} // closed once the process has exited for the shutdown (under cmu)
	downClosed bool
}

// link resolves every runner's edges; a name without a runner (a skipped
// process, dropped before) is ignored.
func link(runners []*runner) {
	byName := make(map[string]*runner, len(runners))
	for _, r := range runners {
		byName[r.p.Name] = r
	}
	for _, r := range runners {
		for _, d := range r.p.DependsOn {
			if to, ok := byName[d.Name]; ok {
				r.deps = append(r.deps, edge{Dependency: d, to: to})
				to.dependents = append(to.dependents, r)
			}
		}
		if len(r.deps) > 0 {
			r.wake = make(chan struct{}, 1)
		}
	}
}

// setState changes the process's status, and wakes its dependents when
// what they wait for changed. (The conditions are read inside the update:
// a copy of the status would be on the stack of every runner, whose
// goroutine parks for the life of its process.)
func (r *runner) setState(f func(p *state.Process)) {
	if len(r.dependents) == 0 {
		r.sup.opt.State.Update(r.p.Name, f)
		return
	}
	var c conds
	r.sup.opt.State.Update(r.p.Name, func(p *state.Process) {
		f(p)
		c = condsOf(p)
	})
	r.cmu.Lock()
	changed := c != r.conds
	r.conds = c
	r.cmu.Unlock()
	if changed {
		for _, d := range r.dependents {
			select {
			case d.wake <- struct{}{}:
			default: // already woken
			}
		}
	}
}

// condsOf is what dependents can wait for in status p.
func condsOf(p *state.Process) conds {
	ready, _ := p.Ready()
	c := conds{
		started:   p.Phase == state.Running || p.Phase == state.Stopping || p.Phase == state.Completed,
		ready:     ready && (p.Phase == state.Running || p.Phase == state.Completed),
		final:     p.Phase == state.Completed || p.Phase == state.Failed,
		succeeded: p.Phase == state.Completed,
	}
	if c.final {
		c.code = p.ExitCode
	}
	return c
}

// check tells whether the edge is met now, or can never be met (why).
func (e *edge) check() (met bool, never string) {
	e.to.cmu.Lock()
	c := e.to.conds
	e.to.cmu.Unlock()
	switch e.Condition {
	case config.Started:
		met = c.started
	case config.Ready:
		met = c.ready
	case config.Completed:
		met = c.final
	case config.CompletedSuccessfully:
		met = c.succeeded
		if c.final && !c.succeeded {
			return false, fmt.Sprintf("%s failed for good (exit code %d), so it cannot complete successfully", e.Name, c.code)
		}
	}
	if !met && c.final {
		return false, fmt.Sprintf("%s failed for good (exit code %d) before it was %s", e.Name, c.code, e.Condition)
	}
	return met, ""
}

// awaitDeps waits, in state pending, until every edge is met at once. It
// returns "" then; otherwise why the process can never start: an edge
// timed out, a dependency can no longer meet its condition, or the
// shutdown began (stopped true), or a stop was asked (held true).
func (r *runner) awaitDeps() (why string, stopped, held bool) {
	s := r.sup
	began := time.Now()
	logged := make([]bool, len(r.deps))
	shown := ""
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		waiting := -1
		var next time.Time // the earliest deadline of an unmet edge
		for i := range r.deps {
			e := &r.deps[i]
			met, never := e.check()
			if never != "" {
				return never, false, false
			}
			if met {
				continue
			}
			if e.Timeout > 0 {
				at := began.Add(e.Timeout)
				if !time.Now().Before(at) {
					r.edgeTimedOut(e)
					return fmt.Sprintf("waited %s for %s: its timeoutSeconds ran out", e.Timeout, e), false, false
				}
				if next.IsZero() || at.Before(next) {
					next = at
				}
			}
			if waiting < 0 {
				waiting = i
			}
		}
		if waiting < 0 {
			return "", false, false
		}
		e := &r.deps[waiting]
		if !logged[waiting] {
			logged[waiting] = true
			r.log().Info("waiting for a dependency", "process", r.p.Name, "waits_for", e.String())
		}
		if why := "waiting for " + e.String(); why != shown {
			shown = why
			r.setState(func(p *state.Process) { p.Phase, p.Reason = state.Pending, why })
		}
		var deadline <-chan time.Time
		if !next.IsZero() {
			if timer == nil {
				timer = time.NewTimer(time.Until(next))
			} else {
				timer.Reset(time.Until(next))
			}
			deadline = timer.C
		}
		select {
		case <-r.wake:
		case <-deadline:
		case <-s.stopping:
			return "", true, false
		case <-r.stopRequested():
			return "", false, true
		}
	}
}

// edgeTimedOut reports an edge whose timeoutSeconds ran out.
//
//go:noinline
func (r *runner) edgeTimedOut(e *edge) {
	r.log().Error("dependency not met in time", "process", r.p.Name, "waits_for", e.String(), "timeout", e.Timeout.String())
	r.sup.emit(&events.Event{Kind: events.DependencyTimeout, Process: r.p.Name, Reason: fmt.Sprintf("%s not met within %s", e, e.Timeout)})
}

// closeDown tells the processes this one depends on that it has exited.
func (r *runner) closeDown() {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	if !r.downClosed {
		r.downClosed = true
		close(r.down)
	}
}

// downChan is closed once the process has exited for the shutdown.
func (r *runner) downChan() <-chan struct{} {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	return r.down
}

// reopenDown makes a runner that ended for good, and is started again by
// request, one that its dependencies wait for again at the shutdown.
func (r *runner) reopenDown() {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	if r.downClosed {
		r.down, r.downClosed = make(chan struct{}), false
	}
}

// awaitDependents holds the stop of a running process at the shutdown
// until every process that depends on it has exited. When the process's
// exit comes first, or the deadline (its group is then SIGKILLed), it
// writes that exit into e and returns true.
func (r *runner) awaitDependents(pid int, exitCh <-chan reaper.Exit, e *reaper.Exit) bool {
	for _, d := range r.dependents {
		down := d.downChan()
		select {
		case <-down:
			continue
		default:
		}
		r.setState(func(p *state.Process) {
			p.Reason = "stopping once what depends on it has exited: " + strings.Join(r.runningDependents(), ", ")
		})
		select {
		case <-down:
		case *e = <-exitCh:
			return true
		case <-r.sup.kill:
			*e = r.kill(pid, exitCh)
			return true
		}
	}
	return false
}

// runningDependents names the dependents that have not exited yet.
func (r *runner) runningDependents() []string {
	var names []string
	for _, d := range r.dependents {
		select {
		case <-d.downChan():
		default:
			names = append(names, d.p.Name)
		}
	}
	return names
}
