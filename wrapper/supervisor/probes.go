package supervisor

import (
	"context"
	"sync"
	"time"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
	"github.com/process-wrapper/process-wrapper/wrapper/events"
	"github.com/process-wrapper/process-wrapper/wrapper/probe"
	"github.com/process-wrapper/process-wrapper/wrapper/state"
)

// probeSet is the probes of one process, built once at start-up (a probe
// that cannot be built is a config error) and run anew for each run.
type probeSet struct {
	startup, readiness, liveness *probeSpec
}

type probeSpec struct {
	typ     probe.Type
	cfg     *config.Probe
	checker probe.Checker

	mu   sync.Mutex // the last result, for the control API
	last probe.Result
	at   time.Time
}

func newProbeSet(p *config.Process, t *probe.Target) (probeSet, error) {
	var set probeSet
	for _, x := range []struct {
		typ probe.Type
		cfg *config.Probe
		dst **probeSpec
	}{
		{probe.Startup, p.Startup, &set.startup},
		{probe.Readiness, p.Readiness, &set.readiness},
		{probe.Liveness, p.Liveness, &set.liveness},
	} {
		if x.cfg == nil {
			continue
		}
		c, err := probe.New(x.cfg, t)
		if err != nil {
			return set, err
		}
		*x.dst = &probeSpec{typ: x.typ, cfg: x.cfg, checker: c}
	}
	return set, nil
}

// runProbes starts the probes of the run now beginning, as kubelet does:
// the startup probe first, then readiness and liveness together. A liveness
// failure past its threshold, or a startup probe that fails for good, is
// sent on unhealthy (once): the runner then restarts the process.
func (r *runner) runProbes(ctx context.Context, wg *sync.WaitGroup, unhealthy chan<- restartRequest) {
	set := r.probes
	if set.startup == nil && set.readiness == nil && set.liveness == nil {
		return
	}
	if r.heartbeats {
		r.sup.opt.Beats.Beat(r.p.Name) // a new run has maxAge to send its first beat
	}
	signal := func(u restartRequest) {
		select {
		case unhealthy <- u:
		default: // one restart request is enough
		}
	}
	worker := func(spec *probeSpec, until func(probe.Result) bool) *probe.Worker {
		failed := false // this run's probe has turned to failed: its next pass is a recovery
		report := func(res probe.Result) { r.report(spec, res, &failed, signal) }
		return &probe.Worker{Type: spec.typ, Probe: spec.cfg, Checker: spec.checker, Report: report, Until: until}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if s := set.startup; s != nil {
			var last probe.Result
			worker(s, func(res probe.Result) bool {
				last = res
				return res.OK || res.Failures >= s.cfg.FailureThreshold
			}).Run(ctx)
			if ctx.Err() != nil {
				return
			}
			if !last.OK {
				r.log().Warn("startup probe failed: restarting process", "process", r.p.Name, "failures", last.Failures, "reason", last.Reason)
				r.setState(func(p *state.Process) { p.LiveFailed, p.ProbeReason = true, "startup: "+last.Reason })
				r.sup.emit(&events.Event{Kind: events.ProbeFailure, Process: r.p.Name, Probe: s.typ.String(), ProbeKind: s.cfg.Kind, Reason: last.Reason})
				signal(restartRequest{events.RestartStartup, "startup probe failed: " + last.Reason})
				return
			}
			r.log().Info("startup probe passed", "process", r.p.Name, "checks", last.Checks)
			r.setState(func(p *state.Process) { p.Started, p.ProbeReason = true, "" })
		}
		for _, spec := range []*probeSpec{set.readiness, set.liveness} {
			if spec == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				worker(spec, nil).Run(ctx)
			}()
		}
	}()
}

// restartRequest is a probe's request to restart the process.
type restartRequest struct {
	cause  string // events.RestartLiveness or events.RestartStartup
	reason string // for people
}

// report takes one probe result into the process's state, logs changes and
// tells the observer.
// A probe_failure event is a passing probe turning to failed (a readiness
// probe starts failed, as kubelet's does: not passing yet is no event), and
// a probe_recovery its pass after that.
func (r *runner) report(spec *probeSpec, res probe.Result, failed *bool, restart func(restartRequest)) {
	name := r.p.Name
	spec.recordProbe(res)
	r.sup.emit(&events.Event{Kind: events.ProbeCheck, Process: name, Probe: spec.typ.String(), ProbeKind: spec.cfg.Kind,
		OK: res.Reason == "", Elapsed: res.Elapsed})
	if res.Changed && res.Type != probe.Startup && (!res.OK || *failed) {
		kind := events.ProbeRecovery
		if !res.OK {
			kind = events.ProbeFailure
		}
		*failed = !res.OK
		r.sup.emit(&events.Event{Kind: kind, Process: name, Probe: spec.typ.String(), ProbeKind: spec.cfg.Kind, Reason: res.Reason})
	}
	if res.Reason != "" {
		r.log().Debug("probe check failed", "process", name, "probe", res.Type.String(), "failures", res.Failures, "reason", res.Reason)
	}
	switch res.Type {
	case probe.Startup:
		if !res.OK && res.Reason != "" {
			r.setState(func(p *state.Process) { p.ProbeReason = "startup: " + res.Reason })
		}
	case probe.Readiness:
		if !res.Changed {
			return
		}
		if res.OK {
			r.log().Info("readiness probe passed", "process", name)
			r.setState(func(p *state.Process) { p.ProbeReady, p.ProbeReason = true, "" })
		} else {
			r.log().Warn("readiness probe failed", "process", name, "failures", res.Failures, "reason", res.Reason)
			r.setState(func(p *state.Process) { p.ProbeReady, p.ProbeReason = false, "readiness: "+res.Reason })
		}
	case probe.Liveness:
		if res.Changed && !res.OK {
			r.log().Warn("liveness probe failed: restarting process", "process", name, "failures", res.Failures, "reason", res.Reason)
			r.setState(func(p *state.Process) { p.LiveFailed, p.ProbeReason = true, "liveness: "+res.Reason })
			restart(restartRequest{events.RestartLiveness, "liveness probe failed: " + res.Reason})
		}
	}
}
