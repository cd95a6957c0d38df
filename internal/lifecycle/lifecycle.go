// Package lifecycle is the wire format of the wrapper's lifecycle events:
// one JSON object per UDP datagram to the metrics server. The wrapper sends
// it and metrics-mock decodes it, so both agree by construction.
package lifecycle

import "time"

// Event is one lifecycle event, the JSON object of one datagram.
type Event struct {
	Event     string            `json:"event"`
	Time      time.Time         `json:"time"`
	Process   string            `json:"process,omitempty"`
	Pid       int               `json:"pid,omitempty"`
	Code      *int              `json:"code,omitempty"`
	Probe     string            `json:"probe,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Node      string            `json:"node,omitempty"`
	Namespace string            `json:"namespace,omitempty"`
	Pod       string            `json:"pod,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// The event names.
const (
	ProcessStart   = "process_start"
	ProcessExit    = "process_exit"
	ProcessRestart = "process_restart"
	ProbeFailure   = "probe_failure"
	ProbeRecovery  = "probe_recovery"
	Shutdown       = "shutdown"
	Preemption     = "preemption"
	Termination    = "termination"
	// RestartBudgetSpent: a process failed for good: more restarts
	// within restartWindowSeconds than maxRestarts allows
	RestartBudgetSpent = "restart_budget_spent"
	// DependencyTimeout: a dependsOn edge's timeoutSeconds ran out; the
	// dependent failed for good
	DependencyTimeout = "dependency_timeout"
	// EssentialExit: an essential process reached a final state; the
	// wrapper stops the others and exits with its code
	EssentialExit = "essential_exit"
	// ControlAction: an operator asked the control API to stop, start,
	// restart or signal a process; the reason says what and who (uid, pid
	// and command of the caller)
	ControlAction = "control_action"
)

// Kinds are the event names the wrapper sends.
var Kinds = map[string]bool{
	ProcessStart: true, ProcessExit: true, ProcessRestart: true,
	ProbeFailure: true, ProbeRecovery: true, Shutdown: true,
	Preemption: true, Termination: true,
	RestartBudgetSpent: true, DependencyTimeout: true, EssentialExit: true,
	ControlAction: true,
}

// MaxDatagram is the largest event: the wrapper shortens the reason of a
// larger one, and the mock counts a larger datagram as malformed.
const MaxDatagram = 16 << 10
