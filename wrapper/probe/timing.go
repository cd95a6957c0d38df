package probe

import (
	"context"
	"io"
	"time"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

// Type is the role of a probe, which decides its initial result and what
// its thresholds mean (kubelet's rules).
type Type int

// The three probe types.
const (
	Startup Type = iota
	Readiness
	Liveness
)

func (t Type) String() string {
	return [...]string{"startup", "readiness", "liveness"}[t]
}

// Thresholds turns single results into the probe's result the way kubelet
// does: the result changes to success after SuccessThreshold consecutive
// successes and to failure after FailureThreshold consecutive failures.
// Readiness and startup start as failure (not ready, not started), liveness
// as success.
type Thresholds struct {
	success, failure int
	ok               bool
	run              int // consecutive results that disagree with ok
	fails            int // consecutive failed checks
}

// NewThresholds returns the counter for a probe of type t.
func NewThresholds(t Type, p *config.Probe) *Thresholds {
	return &Thresholds{success: p.SuccessThreshold, failure: p.FailureThreshold, ok: t == Liveness}
}

// Observe records one check result and returns the probe's result and
// whether this observation changed it.
func (th *Thresholds) Observe(healthy bool) (ok, changed bool) {
	if healthy {
		th.fails = 0
	} else {
		th.fails++
	}
	if healthy == th.ok {
		th.run = 0
		return th.ok, false
	}
	th.run++
	need := th.failure
	if healthy {
		need = th.success
	}
	if th.run >= need {
		th.ok, th.run = healthy, 0
		return th.ok, true
	}
	return th.ok, false
}

// OK is the current result.
func (th *Thresholds) OK() bool { return th.ok }

// Failures is the count of consecutive failed checks.
func (th *Thresholds) Failures() int { return th.fails }

// Result is one check's outcome as the worker reports it.
type Result struct {
	Type     Type
	OK       bool   // the probe's result after thresholds
	Changed  bool   // OK changed with this check
	Reason   string // the last failure's reason; empty when this check passed
	Checks   int    // checks run so far
	Failures int    // consecutive failed checks
	Elapsed  time.Duration
}

// Worker runs one probe for one run of a process: after the initial delay,
// a check every period, each bounded by the timeout, never two at once.
type Worker struct {
	Type    Type
	Probe   *config.Probe
	Checker Checker
	// Report receives every result, from the worker's goroutine.
	Report func(Result)
	// Until, when set, ends the worker at the first result it returns true for
	// (a startup probe ends when it has succeeded or failed for good).
	Until func(Result) bool
}

// Run probes until ctx ends (or Until says so). A checker that keeps
// connections between checks (io.Closer) closes them when Run returns.
func (w *Worker) Run(ctx context.Context) {
	if c, ok := w.Checker.(io.Closer); ok {
		defer c.Close()
	}
	th := NewThresholds(w.Type, w.Probe)
	if !sleep(ctx, w.Probe.InitialDelay) {
		return
	}
	// After the first check, checks fall on multiples of the period: every
	// probe of the wrapper with the same period checks at the same instant,
	// so the wrapper wakes once per period rather than once per probe
	// (100 probes spread over a second kept the scheduler busy all second).
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	checks := 0
	for {
		began := time.Now()
		err := run(ctx, w.Checker, w.Probe)
		if ctx.Err() != nil {
			return
		}
		checks++
		ok, changed := th.Observe(err == nil)
		r := Result{Type: w.Type, OK: ok, Changed: changed, Checks: checks, Failures: th.Failures(), Elapsed: time.Since(began)}
		if err != nil {
			r.Reason = err.Error()
		}
		w.Report(r)
		if w.Until != nil && w.Until(r) {
			return
		}
		timer.Reset(time.Until(nextTick(time.Now(), w.Probe.Period)))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
	}
}

// nextTick is the first multiple of period after now (at least half a period
// away, so that a check that ran late is not followed at once by another).
func nextTick(now time.Time, period time.Duration) time.Time {
	next := now.Truncate(period).Add(period)
	if next.Sub(now) < period/2 {
		next = next.Add(period)
	}
	return next
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
