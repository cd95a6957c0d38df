// Package supervisor starts, watches, restarts and stops the wrapper's
// processes. One runner goroutine owns each process's life (start, running,
// backoff, stopping, exited); the Supervisor owns the runners, the shutdown
// deadline and the exit code.
package supervisor

import (
	"context"
	"runtime"
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
)

// Backoff is how restarts are spaced: like kubelet's CrashLoopBackOff, but
// sized for restarts inside one container.
type Backoff struct {
	Initial    time.Duration // before the first restart
	Max        time.Duration // the cap of the doubling
	ResetAfter time.Duration // a run this long resets the delay to Initial
}

// DefaultBackoff: 1s, 2s, 4s, ... up to 30s; reset after 60s of running.
var DefaultBackoff = Backoff{Initial: time.Second, Max: 30 * time.Second, ResetAfter: time.Minute}

// DefaultDrain bounds how long the output of processes that have exited is
// still read at the wrapper's exit, for pipes that a grandchild holds open.
const DefaultDrain = 100 * time.Millisecond

// Options configures a Supervisor.
type Options struct {
	Processes []config.Process
	Reaper    *reaper.Reaper
	State     *state.Store
	Log       *logline.Logger
	Out       *logline.Output
	Format    relay.Format
	Poller    *relay.Poller      // waits on every process's pipes
	Environ   []string           // the wrapper's environment, as from os.Environ
	Deadline  time.Duration      // -graceful-shutdown-deadline
	Backoff   Backoff            // zero: DefaultBackoff
	Drain     time.Duration      // zero: DefaultDrain
	Reaps     bool               // the wrapper is PID 1 or a child subreaper: orphans are its children
	Beats     *probe.Beats       // heartbeats received over HTTP
	Locks     *lockclient.Client // the shared-lock server (-shared-lock-url)
	AMQP      probe.AMQPDefaults
	Observer  events.Observer // hears starts, exits, restarts, probe checks and the shutdown; may be nil
	// BeforeStop runs at the start of the shutdown, after the state says
	// "stopping" (so /readiness answers 503) and before any process is
	// signalled: the readiness file is removed there.
	BeforeStop func()
}

// Supervisor runs every process until each has ended for good, or until
// Stop and the deadline.
type Supervisor struct {
	opt     Options
	runners []*runner
	// starts lets a few processes be started at once: a fork holds its
	// thread until the child's exec, and Go makes a thread for each one
	// that waits; a thousand processes started at once left up to 55
	// threads (50 KiB of stacks each) that never go
	starts chan struct{}

	stopOnce sync.Once
	stopping chan struct{} // closed by Stop
	killOnce sync.Once
	kill     chan struct{} // closed at the deadline

	mu       sync.Mutex
	exitCode int
	decided  bool
	finished bool           // Finish was called: later exits do not decide the code
	stopped  bool           // Stop was called
	cause    syscall.Signal // the signal that began the shutdown
	kept     []leftovers    // left behind by processes that ended for good
	live     int            // runners whose goroutine runs
	idle     chan struct{}  // closed when live falls to 0: Run returns
}

// New returns a supervisor for opt.Processes. An error means a probe
// cannot be built: nothing was started.
func New(opt Options) (*Supervisor, error) {
	if opt.Backoff == (Backoff{}) {
		opt.Backoff = DefaultBackoff
	}
	if opt.Drain == 0 {
		opt.Drain = DefaultDrain
	}
	s := &Supervisor{opt: opt, stopping: make(chan struct{}), kill: make(chan struct{}), idle: make(chan struct{}), starts: make(chan struct{}, 2*runtime.GOMAXPROCS(0))}
	if opt.Beats == nil {
		opt.Beats = probe.NewBeats()
		s.opt.Beats = opt.Beats
	}
	for i := range opt.Processes {
		r, err := newRunner(s, &opt.Processes[i])
		if err != nil {
			return nil, err
		}
		s.runners = append(s.runners, r)
		if r.p.Essential {
			opt.State.Update(r.p.Name, func(p *state.Process) { p.Essential = true })
		}
	}
	link(s.runners)
	return s, nil
}

// Run starts every process and returns when none is left running or
// restarting, with the wrapper's exit code: 0 when every process ended with
// 0, otherwise the code of the first process that did not (128+N for a
// process killed by signal N). ctx ending is the same as Stop.
func (s *Supervisor) Run(ctx context.Context) int {
	stopWatch := context.AfterFunc(ctx, func() { s.Stop(syscall.SIGTERM) })
	defer stopWatch()
	s.mu.Lock()
	for _, r := range s.runners {
		s.goRun(r)
	}
	s.mu.Unlock()
	<-s.idle
	s.endKept()
	s.drain()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exitCode
}

// drain waits for the relays of every process to reach the end of their
// pipes, for at most opt.Drain: every process has exited, but a grandchild
// may hold a pipe open for ever. What the pipes already hold is still read;
// a pipe that stays open ends its relay at the deadline. A stdout that has
// stopped moving ends the wait too: the wrapper must exit all the same.
func (s *Supervisor) drain() {
	at := time.Now().Add(s.opt.Drain)
	for _, r := range s.runners {
		r.expirePipes(at)
	}
	done := make(chan struct{})
	// owned by the wrapper's exit when stdout is stuck: its relays then
	// wait in a write that never returns
	go func() {
		defer close(done)
		for _, r := range s.runners {
			r.relays.Wait()
		}
	}()
	if !s.opt.Out.WaitIdle(done, drainIdle) {
		s.opt.Log.Always("stdout has not moved for a while: the processes' last lines are lost", "waited", drainIdle.String())
	}
}

// drainIdle is how long the exit waits for a stdout that does not move any
// more to take the processes' last lines.
const drainIdle = 300 * time.Millisecond

// record keeps the final exit of a process for the wrapper's exit code.
func (s *Supervisor) record(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.decided && !s.finished && code != 0 {
		s.exitCode, s.decided = code, true
	}
}

// Stop begins the shutdown once: every running process gets its stop signal
// at its main pid, no process is restarted, and at the deadline whatever is
// left gets SIGKILL to its whole process group. What processes that ended
// for good left in their groups gets the stop signal too.
func (s *Supervisor) Stop(cause syscall.Signal) { s.shutdown(cause, nil) }

// shutdown is Stop; before, when the shutdown begins here, it runs first
// under the lock, and the shutdown's log line gets kv.
func (s *Supervisor) shutdown(cause syscall.Signal, before func() []any) {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		var kv []any
		if before != nil {
			kv = before()
		}
		s.stopped, s.cause = true, cause
		kept := s.kept
		s.mu.Unlock()
		s.opt.State.SetStopping()
		s.opt.Log.Always("shutting down", append([]any{"signal", config.SignalName(cause), "deadline", s.opt.Deadline.String()}, kv...)...)
		s.emit(&events.Event{Kind: events.Shutdown, Reason: config.SignalName(cause)})
		if s.opt.BeforeStop != nil {
			s.opt.BeforeStop()
		}
		close(s.stopping)
		time.AfterFunc(s.opt.Deadline, func() { s.killOnce.Do(func() { close(s.kill) }) })
		for _, l := range kept {
			s.stopGroups(l)
		}
	})
}

// stopCause is the signal that began the shutdown; only for runners that
// have seen s.stopping closed.
func (s *Supervisor) stopCause() syscall.Signal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cause
}

// emit hands e to the observer.
func (s *Supervisor) emit(e *events.Event) {
	if s.opt.Observer != nil {
		s.opt.Observer.Observe(e)
	}
}

// Finish stops every process because their work is over (the pod's other
// containers have ended, HANDLE_TERMINATION): a shutdown like Stop's, but
// how the processes end from here on leaves the exit code alone, which
// stays 0 unless a process had already failed.
func (s *Supervisor) Finish() {
	s.mu.Lock()
	s.finished = true
	s.mu.Unlock()
	s.Stop(syscall.SIGTERM)
}

// essentialEnded ends the wrapper because the essential process name
// reached a final state: the others are drained in reverse order, and the
// wrapper exits with code, which their exits in that drain do not change.
// A shutdown that began before keeps its own rules.
func (s *Supervisor) essentialEnded(name string, code int, why string) {
	s.shutdown(syscall.SIGTERM, func() []any {
		s.exitCode, s.decided, s.finished = code, true, true
		s.opt.Log.Always("essential process ended: stopping the others", "process", name, "code", code, "reason", why)
		s.emit(&events.Event{Kind: events.EssentialExit, Process: name, Code: code, Reason: why})
		return []any{"reason", "essential process " + name + " ended"}
	})
}

// Environ returns the environment of the current run of process name (the
// wrapper's own, filtered, before its first run).
func (s *Supervisor) Environ(name string) []string {
	for _, r := range s.runners {
		if r.p.Name == name {
			if env := r.environ(); env != nil {
				return env
			}
			env, _, _ := r.p.Environ(s.opt.Environ)
			return env
		}
	}
	return nil
}

// Forward sends sig to the main pid of every running process.
func (s *Supervisor) Forward(sig syscall.Signal) {
	for _, r := range s.runners {
		r.signal(sig)
	}
}
