package metrics

import (
	"github.com/process-wrapper/process-wrapper/wrapper/state"
	"github.com/prometheus/client_golang/prometheus"
)

// phases are the values of the state label, every one exported for every
// process (1 for the current one), as a Prometheus state set.
var phases = []state.Phase{state.Pending, state.Starting, state.Running, state.Backoff, state.Stopping,
	state.Completed, state.Failed, state.Stopped}

// stateCollector reads the state store at scrape time.
type stateCollector struct {
	st                                             *state.Store
	up, phase, ready, live, since, suspended, left *prometheus.Desc
	wrapperReady, preempted, stopping              *prometheus.Desc
}

func newStateCollector(st *state.Store) *stateCollector {
	p := []string{"process"}
	return &stateCollector{
		st:           st,
		up:           prometheus.NewDesc(ns+"_process_up", "1 when the process's main pid is running.", p, nil),
		phase:        prometheus.NewDesc(ns+"_process_state", "1 for the state the process is in: pending, starting, running, backoff, stopping, completed, failed, stopped.", []string{"process", "state"}, nil),
		ready:        prometheus.NewDesc(ns+"_process_ready", "1 when the process counts as ready (as /readiness sees it).", p, nil),
		live:         prometheus.NewDesc(ns+"_process_live", "1 when the process counts as live (as /liveness sees it).", p, nil),
		since:        prometheus.NewDesc(ns+"_process_state_change_timestamp_seconds", "Unix time at which the process entered its state.", p, nil),
		suspended:    prometheus.NewDesc(ns+"_process_suspended", "1 while the process's main pid is stopped by a signal (SIGSTOP, SIGTSTP, ...).", p, nil),
		left:         prometheus.NewDesc(ns+"_process_leftover_processes", "Members of the process's groups that outlived its last run's main pid and have not ended yet.", p, nil),
		stopping:     prometheus.NewDesc(ns+"_stopping", "1 once the wrapper is shutting down.", nil, nil),
		preempted:    prometheus.NewDesc(ns+"_preempted", "1 once the node is preempted (HANDLE_PREEMPTION).", nil, nil),
		wrapperReady: prometheus.NewDesc(ns+"_ready", "1 when /readiness answers 200.", nil, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.phase, c.ready, c.live, c.since, c.suspended, c.left, c.stopping, c.preempted, c.wrapperReady} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	view, _ := c.st.Watch()
	all := !view.Stopping && !view.Preempted && view.Gate == ""
	for i := range view.Procs {
		p := &view.Procs[i]
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, b2f(p.Phase == state.Running), p.Name)
		for _, ph := range phases {
			ch <- prometheus.MustNewConstMetric(c.phase, prometheus.GaugeValue, b2f(p.Phase == ph), p.Name, string(ph))
		}
		ready, _ := p.Ready()
		live, _ := p.Live()
		all = all && ready
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, b2f(ready), p.Name)
		ch <- prometheus.MustNewConstMetric(c.live, prometheus.GaugeValue, b2f(live), p.Name)
		ch <- prometheus.MustNewConstMetric(c.since, prometheus.GaugeValue, float64(p.Since.UnixMilli())/1000, p.Name)
		ch <- prometheus.MustNewConstMetric(c.suspended, prometheus.GaugeValue, b2f(p.Suspended), p.Name)
		ch <- prometheus.MustNewConstMetric(c.left, prometheus.GaugeValue, float64(p.Leftovers), p.Name)
	}
	ch <- prometheus.MustNewConstMetric(c.stopping, prometheus.GaugeValue, b2f(view.Stopping))
	ch <- prometheus.MustNewConstMetric(c.preempted, prometheus.GaugeValue, b2f(view.Preempted))
	ch <- prometheus.MustNewConstMetric(c.wrapperReady, prometheus.GaugeValue, b2f(all))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
