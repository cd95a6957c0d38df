// Package state is the single owner of every process's status. The
// supervisor (and, later, probes, preemption and pod watching) write into it;
// endpoints, metrics and events read snapshots or wait for the next change.
package state

import (
	"sync"
	"time"
)

// Phase is where a process is in its life.
type Phase string

// The phases of a process.
const (
	Pending   Phase = "pending"   // not started yet, or waiting for its dependsOn conditions
	Starting  Phase = "starting"  // being started
	Running   Phase = "running"   // its main pid is alive
	Backoff   Phase = "backoff"   // exited, waiting to be restarted
	Stopping  Phase = "stopping"  // told to stop, not yet exited
	Completed Phase = "completed" // exited 0 and will not restart: counts as live and ready
	Failed    Phase = "failed"    // exited non-zero and will not restart: not live, not ready
	Stopped   Phase = "stopped"   // ended by the wrapper's shutdown
)

// Process is the status of one process.
type Process struct {
	Name     string
	Phase    Phase
	Pid      int
	Restarts int
	ExitCode int       // of the last exit; -1 before any
	ExitedAt time.Time // of the last exit; zero before any
	Since    time.Time // when Phase was entered
	Reason   string    // why the process is in Phase, for people
	// Suspended: its main pid is stopped by a signal (SIGSTOP, SIGTSTP...)
	// until a SIGCONT.
	Suspended bool
	// Held: stopped by a control request; it stays stopped, not ready but
	// live, until a start.
	Held bool
	// Essential: its final state ends the wrapper, so its failure does not
	// make the wrapper not live (the wrapper is ending anyway).
	Essential bool
	// Leftovers counts the members of its process groups that outlived
	// its last run's main pid and have not ended yet (see the README).
	Leftovers int

	// Health of the current run, from its probes.
	Started     bool   // its startup probe has passed (true without one)
	ProbeReady  bool   // its readiness probe passes (true without one)
	LiveFailed  bool   // its liveness (or startup) probe failed past its threshold; cleared by the next run
	ProbeReason string // why the failing probe fails: "readiness: GET http://...: status 500"
}

// Ready reports whether the process counts as ready, and why not. A
// completed process stays ready; a running one is ready once started and
// its readiness probe passes.
func (p *Process) Ready() (bool, string) {
	switch p.Phase {
	case Completed:
		return true, ""
	case Running:
		switch {
		case p.LiveFailed:
			return false, p.ProbeReason
		case !p.Started:
			if p.ProbeReason != "" {
				return false, "startup probe has not passed: " + p.ProbeReason
			}
			return false, "startup probe has not passed yet"
		case !p.ProbeReady:
			if p.ProbeReason != "" {
				return false, p.ProbeReason
			}
			return false, "readiness probe has not passed yet"
		}
		return true, ""
	case Pending:
		if p.Reason != "" {
			return false, p.Reason // "waiting for cache (ready)"
		}
	}
	why := string(p.Phase)
	if p.Reason != "" {
		why += ": " + p.Reason
	}
	return false, why
}

// Live reports whether the process counts as live, and why not: it is not
// live when it failed for good, or when its liveness probe failed past its
// threshold and the restart has not yet brought it back.
func (p *Process) Live() (bool, string) {
	switch {
	case p.Phase == Failed && !p.Essential:
		return false, "failed: " + p.Reason
	case p.LiveFailed:
		return false, p.ProbeReason
	}
	return true, ""
}

// Store holds the status of every process, in config order.
type Store struct {
	mu        sync.Mutex
	procs     []Process
	index     map[string]int
	unstarted int // processes pending or starting
	notReady  int // processes not ready
	changed   chan struct{}
	stopping  bool
	preempted bool   // the node is being taken away: not ready, still live
	gate      string // why the wrapper as a whole is not ready yet (post-start hooks)
}

// View is the whole state at one instant.
type View struct {
	Procs     []Process
	Stopping  bool   // the wrapper is shutting down
	Preempted bool   // the node is preempted
	Gate      string // non-empty: the wrapper is not ready for this reason (post-start hooks)
}

// Summary is what waiting for "every process started" or "ready" needs,
// kept up to date at each change: a waiter wakes at every change of every
// process, and with a thousand processes a look at the whole table at each
// wake would make starting them cost the square of their number.
type Summary struct {
	Unstarted int // processes pending or starting
	NotReady  int // processes not ready
	Stopping  bool
	Preempted bool
	Gate      string
}

// Ready reports whether the wrapper as a whole is ready, as /readiness
// answers it.
func (s Summary) Ready() bool {
	return !s.Stopping && !s.Preempted && s.Gate == "" && s.NotReady == 0
}

// New returns a store with every named process pending.
func New(names []string) *Store {
	s := &Store{index: make(map[string]int, len(names)), changed: make(chan struct{}), unstarted: len(names), notReady: len(names)}
	now := time.Now()
	for i, n := range names {
		s.index[n] = i
		s.procs = append(s.procs, Process{Name: n, Phase: Pending, ExitCode: -1, Since: now})
	}
	return s
}

// Update changes the status of process name with f and wakes every waiter.
func (s *Store) Update(name string, f func(p *Process)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[name]
	if !ok {
		return
	}
	p := &s.procs[i]
	before := p.Phase
	unstarted, notReady := p.counts()
	f(p)
	if p.Phase != before {
		p.Since = time.Now()
	}
	u, n := p.counts()
	s.unstarted += u - unstarted
	s.notReady += n - notReady
	s.notifyLocked()
}

// counts is how p adds to the summary's counts.
func (p *Process) counts() (unstarted, notReady int) {
	if p.Phase == Pending || p.Phase == Starting {
		unstarted = 1
	}
	if ok, _ := p.Ready(); !ok {
		notReady = 1
	}
	return
}

// Summarize returns the summary and the channel closed at the next change,
// taken at one instant, at a cost that does not grow with the processes.
func (s *Store) Summarize() (Summary, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Summary{Unstarted: s.unstarted, NotReady: s.notReady, Stopping: s.stopping, Preempted: s.preempted, Gate: s.gate}, s.changed
}

// WatchOne returns the status of one process and the channel closed at the
// next change (of any process).
func (s *Store) WatchOne(name string) (Process, bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[name]
	if !ok {
		return Process{}, false, s.changed
	}
	return s.procs[i], true, s.changed
}

// SetStopping records that the wrapper is shutting down.
func (s *Store) SetStopping() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopping {
		s.stopping = true
		s.notifyLocked()
	}
}

// Stopping reports whether the wrapper is shutting down.
func (s *Store) Stopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

func (s *Store) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Snapshot returns a copy of every status, in config order, and a channel
// that is closed at the next change after it.
func (s *Store) Snapshot() ([]Process, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Process(nil), s.procs...), s.changed
}

// Watch returns the state and the channel closed at the next change, taken
// at one instant.
func (s *Store) Watch() (View, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return View{Procs: append([]Process(nil), s.procs...), Stopping: s.stopping, Preempted: s.preempted, Gate: s.gate}, s.changed
}

// SetPreempted records that the node is preempted.
func (s *Store) SetPreempted() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.preempted {
		s.preempted = true
		s.notifyLocked()
	}
}

// SetGate holds the wrapper's readiness back for reason; "" opens it.
func (s *Store) SetGate(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != reason {
		s.gate = reason
		s.notifyLocked()
	}
}

// Changed returns the channel that is closed at the next change: it
// identifies the current version of the state.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Get returns the status of one process.
func (s *Store) Get(name string) (Process, bool) {
	p, ok, _ := s.WatchOne(name)
	return p, ok
}
