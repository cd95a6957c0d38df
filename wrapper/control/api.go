// Package control is the wrapper's control API: HTTP/JSON under /v1/ on a
// unix socket (and, when asked, on TCP with a bearer token). It reads the
// processes' state and calls the supervisor's own operations (stop, start,
// restart, signal); it never touches a process itself. The types here are
// the API's objects, which the ctl client decodes too.
package control

import (
	"fmt"
	"time"
)

// Process is one process as the API shows it.
type Process struct {
	Name      string `json:"name"`
	State     string `json:"state"`            // pending, starting, running, backoff, stopping, completed, failed, stopped
	Reason    string `json:"reason,omitempty"` // why it is in State, secrets redacted
	Pid       int    `json:"pid,omitempty"`
	Run       int    `json:"run"` // runs started
	Restarts  int    `json:"restarts"`
	Ready     bool   `json:"ready"`
	Live      bool   `json:"live"`
	NotReady  string `json:"notReady,omitempty"` // why it is not ready, as /readiness says it
	Held      bool   `json:"stoppedByRequest,omitempty"`
	Essential bool   `json:"essential,omitempty"`
	// Since is when it entered State; UptimeSeconds how long it has
	// been running, while it runs
	Since         time.Time `json:"since"`
	UptimeSeconds float64   `json:"uptimeSeconds,omitempty"`
	LastExit      *Exit     `json:"lastExit,omitempty"`
	Probes        []Probe   `json:"probes,omitempty"`
	DependsOn     []Edge    `json:"dependsOn,omitempty"`
	Dependents    []string  `json:"dependents,omitempty"`
	// what its tree uses, as /metrics reports it
	CPUSeconds  float64 `json:"cpuSeconds"`
	MemoryBytes float64 `json:"memoryBytes"`
	Tree        int     `json:"treeProcesses"`
}

// Exit is a process's last exit.
type Exit struct {
	Code int       `json:"code"` // 128+N when killed by signal N
	At   time.Time `json:"at"`
}

// Probe is the last result of one of its probes.
type Probe struct {
	Type   string    `json:"type"` // startup, readiness, liveness
	Kind   string    `json:"kind"` // http, tcp, exec, ...
	OK     bool      `json:"ok"`
	Checks int       `json:"checks"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

// Edge is one of its dependsOn edges.
type Edge struct {
	Name           string `json:"name"`
	Condition      string `json:"condition"`
	TimeoutSeconds int    `json:"timeoutSeconds,omitempty"`
	Met            bool   `json:"met"`
}

// List is the answer of GET /v1/processes.
type List struct {
	Processes []Process `json:"processes"`
}

// SignalRequest is the body of POST /v1/processes/{name}/signal.
type SignalRequest struct {
	Signal string `json:"signal"` // SIGHUP, HUP, 1
}

// Error is the body of every answer that is not a success.
type Error struct {
	Error string `json:"error"`
}

// How the ctl table and the /status page show a process's figures.

// UptimeText is how long it has been running, or "-".
func (p Process) UptimeText() string {
	if p.UptimeSeconds == 0 {
		return "-"
	}
	return time.Duration(p.UptimeSeconds * float64(time.Second)).Round(time.Second).String()
}

// LastExitText is its last exit code and how long ago, or "-".
func (p Process) LastExitText() string {
	if p.LastExit == nil {
		return "-"
	}
	return fmt.Sprintf("%d, %s ago", p.LastExit.Code, time.Since(p.LastExit.At).Round(time.Second))
}

// PidText is its pid, or "-".
func (p Process) PidText() string {
	if p.Pid == 0 {
		return "-"
	}
	return fmt.Sprint(p.Pid)
}

// CPUText is its tree's CPU time.
func (p Process) CPUText() string { return fmt.Sprintf("%.2fs", p.CPUSeconds) }

// MemoryText is its tree's resident memory, or "-".
func (p Process) MemoryText() string {
	if p.MemoryBytes == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fMiB", p.MemoryBytes/(1<<20))
}

// Why is why it is in its state, or else why it is not ready.
func (p Process) Why() string {
	if p.Reason != "" {
		return p.Reason
	}
	return p.NotReady
}

// String is the edge and whether it holds: "db (ready): met".
func (e Edge) String() string {
	met := "not met"
	if e.Met {
		met = "met"
	}
	return fmt.Sprintf("%s (%s): %s", e.Name, e.Condition, met)
}
