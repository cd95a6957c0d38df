// Package signals takes the signals the wrapper handles, as early as a Go
// program can: in a package initialiser that needs nothing but os/signal, so
// that Go's module-wide init order runs it before the initialisers of the
// big libraries (kong, client_golang, procfs, protobuf, yaml). Until a
// signal is taken, Go's runtime applies the default action: a SIGTERM then
// ends the wrapper (exit 2 as PID 1, where the kernel does not let the
// default action kill it) before it could stop anything. After init, a
// signal waits in the channel until the supervisor reads it, so none is
// lost however early it comes.
//
// What the wrapper does with each signal is decided here too (Action), so
// that the README's table, the handler and the tests read one list.
package signals

import (
	"os"
	"os/signal"
	"syscall"
)

// Action is what the wrapper does when it receives a signal.
type Action int

// The actions.
const (
	// Untouched: the wrapper does not take the signal. SIGKILL and SIGSTOP
	// cannot be taken; SIGCHLD belongs to the reaper; SIGPROF, SIGURG and
	// the real-time signals to Go's runtime (its profiler, its goroutine
	// preemption, its internal signals), which sends them to itself.
	Untouched Action = iota
	// Stop: the wrapper shuts down (SIGTERM, SIGINT, SIGQUIT).
	Stop
	// Forward: sent on to the main pid of every running process.
	Forward
	// Ignore: taken and dropped (SIGPIPE: the wrapper's own writes to a
	// closed stdout or a reset HTTP peer raise it, and a signal sent with
	// kill cannot be told apart from those).
	Ignore
)

// Of returns what the wrapper does with sig.
func Of(sig syscall.Signal) Action {
	switch sig {
	case syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT:
		return Stop
	case syscall.SIGPIPE:
		return Ignore
	case syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGCHLD, syscall.SIGPROF, syscall.SIGURG:
		return Untouched
	}
	if sig >= 1 && sig <= 31 {
		return Forward
	}
	return Untouched
}

// taken is every signal whose Action is not Untouched, in number order.
var taken = func() []os.Signal {
	var s []os.Signal
	for n := syscall.Signal(1); n <= 31; n++ {
		if Of(n) != Untouched {
			s = append(s, n)
		}
	}
	return s
}()

// incoming holds what arrives before the supervisor reads it: os/signal
// keeps one pending delivery of each signal number beside it, so a burst
// larger than this loses only repeats of a signal already queued.
var incoming = make(chan os.Signal, 64)

// ready is closed once every signal of taken is taken.
var ready = make(chan struct{})

// Taking a signal costs a round trip to the runtime's signal thread (about
// 60 µs here): the stop signals are taken at once, the two dozen others on
// a goroutine beside the rest of the start-up, which Wait joins before the
// first process starts.
func init() {
	signal.Notify(incoming, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	go func() {
		defer close(ready)
		var rest []os.Signal
		for _, sig := range taken {
			if Of(sig.(syscall.Signal)) != Stop {
				rest = append(rest, sig)
			}
		}
		signal.Notify(incoming, rest...)
	}()
}

// Wait returns once every signal the wrapper takes is taken: before it, a
// child could inherit a signal the wrapper's parent ignored (a handled
// signal is reset to its default at exec, an ignored one is not), and a
// signal other than the stop signals would still have its default action.
func Wait() { <-ready }

// Incoming returns the channel that receives every signal the wrapper takes,
// from the program's first initialisers on.
func Incoming() <-chan os.Signal { return incoming }

// Release gives every taken signal its default action back, for the
// wrapper's one-shot commands (-wait, -install): Ctrl-C must end them.
func Release() {
	Wait()
	signal.Reset(taken...)
}
