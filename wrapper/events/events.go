// Package events carries what happens to the wrapper's processes (starts,
// exits, restarts, probe checks, shutdown, preemption, termination) from the
// supervisor to those who count or forward it: the metrics and the UDP
// sender of lifecycle events to the metrics server.
package events

import (
	"syscall"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/lifecycle"
)

// Kinds of events. The lifecycle ones go to the metrics server too; the
// others are only counted.
const (
	ProcessStart   = lifecycle.ProcessStart
	ProcessExit    = lifecycle.ProcessExit
	ProcessRestart = lifecycle.ProcessRestart
	ProbeFailure   = lifecycle.ProbeFailure  // a probe's result turned to failed (after its threshold)
	ProbeRecovery  = lifecycle.ProbeRecovery // a probe's result turned to passed
	Shutdown       = lifecycle.Shutdown
	Preemption     = lifecycle.Preemption
	Termination    = lifecycle.Termination
	// RestartBudgetSpent: a process failed for good, its maxRestarts spent
	RestartBudgetSpent = lifecycle.RestartBudgetSpent
	// DependencyTimeout: a dependsOn edge's timeoutSeconds ran out
	DependencyTimeout = lifecycle.DependencyTimeout
	// EssentialExit: an essential process ended: the wrapper drains
	EssentialExit = lifecycle.EssentialExit
	// ControlAction: an action asked through the control API (who asked
	// is in the reason)
	ControlAction = lifecycle.ControlAction
	ProbeCheck    = "probe_check" // one check of a probe ran (every period)
	HookRun       = "hook_run"    // one try of a post-start hook ended
)

// Event is one thing that happened. Fields that do not apply are zero.
type Event struct {
	Kind      string
	Process   string
	Pid       int
	Code      int    // ProcessExit: the exit code (128+N for signal N)
	Probe     string // startup, readiness or liveness
	ProbeKind string // http, tcp, exec, ...
	Reason    string // why: a probe's failure, a restart's cause
	OK        bool   // ProbeCheck, HookRun: it passed
	Elapsed   time.Duration
	// Rusage of a ProcessExit: the CPU time of the main pid and of the
	// descendants it waited for, as wait4 reported it.
	Rusage *syscall.Rusage
}

// Observer hears events. Observe runs on the goroutine where the event
// happened (a process's runner, a probe's worker): it must not block.
type Observer interface {
	Observe(e *Event)
}

// Observers hands each event to every observer in turn.
type Observers []Observer

// Observe implements Observer.
func (o Observers) Observe(e *Event) {
	for _, x := range o {
		x.Observe(e)
	}
}

// Restart reasons (the reason label of the restarts metric).
const (
	RestartExit     = "exit"      // the process exited and its policy restarts it
	RestartLiveness = "liveness"  // its liveness probe failed past its threshold
	RestartStartup  = "startup"   // its startup probe failed for good
	RestartLockLost = "lock_lost" // its shared lock was lost while it ran
	RestartStart    = "start_failed"
	// RestartRequested: stopped through the control API (not a restart of
	// its policy: the process waits for a start)
	RestartRequested = "requested"
)
