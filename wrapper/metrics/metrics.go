// Package metrics holds the wrapper's Prometheus metrics: a registry of its
// own (not the global default) with the process_wrapper_* families, fed by
// the supervisor's events and read from the state store and /proc at
// scrape time, plus the Go and process collectors of the wrapper itself.
package metrics

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/wrapper/events"
	"github.com/process-wrapper/process-wrapper/wrapper/state"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

const ns = "process_wrapper"

// Metrics is the wrapper's registry and the families the supervisor's
// events feed. Its label values are bounded: process names, probe and hook
// names come from the config; reasons and codes from fixed sets.
type Metrics struct {
	reg *prometheus.Registry

	starts        *prometheus.CounterVec
	restarts      *prometheus.CounterVec
	exits         *prometheus.CounterVec
	runDuration   *prometheus.HistogramVec
	probeDuration *prometheus.HistogramVec
	probeFailures *prometheus.CounterVec
	hookDuration  *prometheus.HistogramVec
	readiness     prometheus.Counter
	waitRefused   prometheus.Counter

	tree *treeCollector

	mu     sync.Mutex
	probes map[probeKey]probeSeries // curried per process and probe: no label hashing per check
}

type probeKey struct{ process, probe string }

type probeSeries struct {
	duration prometheus.Observer
	failures prometheus.Counter
}

// New returns the metrics of a wrapper whose processes are in st.
func New(st *state.Store) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "process_starts_total",
			Help: "Runs of the process started (the first start and every restart)."}, []string{"process"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "process_restarts_total",
			Help: "Restarts of the process by reason: exit (its restartPolicy), liveness, startup (a probe failed past its threshold), lock_lost, start_failed."},
			[]string{"process", "reason"}),
		exits: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "process_exits_total",
			Help: "Exits of the process by exit code (128+N when killed by signal N)."}, []string{"process", "code"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "process_run_duration_seconds",
			Help:    "How long each run of the process lasted, from start to exit.",
			Buckets: []float64{0.1, 1, 10, 60, 600, 3600, 6 * 3600, 24 * 3600}}, []string{"process"}),
		probeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "probe_duration_seconds",
			Help:    "How long each check of a probe took, passed or failed.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}},
			[]string{"process", "probe", "kind"}),
		probeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "probe_failures_total",
			Help: "Checks of a probe that failed (each check, before thresholds)."}, []string{"process", "probe", "kind"}),
		hookDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "hook_duration_seconds",
			Help:    "How long each try of a post-start hook took, by result (ok or failed).",
			Buckets: []float64{.01, .1, .5, 1, 5, 10, 30, 60, 300}}, []string{"hook", "result"}),
		readiness: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "readiness_failed_total",
			Help: "Answers of /readiness that were 503."}),
		waitRefused: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "wait_refused_total",
			Help: "Requests with ?wait answered at once because the most waiters were already held."}),
		probes: map[probeKey]probeSeries{},
	}
	m.tree = newTreeCollector(st)
	m.reg.MustRegister(m.starts, m.restarts, m.exits, m.runDuration, m.probeDuration, m.probeFailures, m.hookDuration,
		m.readiness, m.waitRefused, newStateCollector(st), m.tree,
		&lazy{make: func() prometheus.Collector { return collectors.NewGoCollector() }},
		&lazy{make: func() prometheus.Collector { return collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}) }})
	return m
}

// lazy is a collector made at its first collection: the Go collector reads
// the runtime's descriptions of its metrics when made, which the wrapper's
// start need not wait for. It describes nothing (an unchecked collector).
type lazy struct {
	once sync.Once
	make func() prometheus.Collector
	c    prometheus.Collector
}

func (l *lazy) Describe(chan<- *prometheus.Desc) {}

func (l *lazy) Collect(ch chan<- prometheus.Metric) {
	l.once.Do(func() { l.c = l.make() })
	l.c.Collect(ch)
}

// Registry is where more collectors of the wrapper go (the event sender's
// counters), and what /prommerge gathers as the wrapper's own families.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry, in the text format or OpenMetrics as the
// scraper asks.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Gatherer(), promhttp.HandlerOpts{EnableOpenMetrics: true, DisableCompression: true})
}

// clashing are families that OpenMetrics cannot tell from another one:
// client_golang's Go collector exports the gauge go_memstats_alloc_bytes
// and the counter go_memstats_alloc_bytes_total, one family name for a
// strict OpenMetrics parser (a counter's samples end in _total). The
// counter goes; the gauge is the one dashboards read.
var clashing = map[string]bool{"go_memstats_alloc_bytes_total": true}

// Gatherer gathers the registry without the clashing families: what
// /metrics serves and /prommerge merges.
func (m *Metrics) Gatherer() prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		fams, err := m.reg.Gather()
		return slices.DeleteFunc(fams, func(f *dto.MetricFamily) bool { return clashing[f.GetName()] }), err
	})
}

// ReadinessFailed counts one 503 of /readiness.
func (m *Metrics) ReadinessFailed() { m.readiness.Inc() }

// WaitRefused counts one ?wait request answered at once (the cap of held
// waiters was reached).
func (m *Metrics) WaitRefused() { m.waitRefused.Inc() }

// Observe implements events.Observer.
func (m *Metrics) Observe(e *events.Event) {
	switch e.Kind {
	case events.ProcessStart:
		m.starts.WithLabelValues(e.Process).Inc()
	case events.ProcessExit:
		m.exits.WithLabelValues(e.Process, strconv.Itoa(e.Code)).Inc()
		m.runDuration.WithLabelValues(e.Process).Observe(e.Elapsed.Seconds())
		if e.Rusage != nil {
			m.tree.reaped(e.Process, cpuSeconds(e.Rusage.Utime, e.Rusage.Stime))
		}
	case events.ProcessRestart:
		m.restarts.WithLabelValues(e.Process, e.Reason).Inc()
	case events.ProbeCheck:
		s := m.probeSeries(e)
		s.duration.Observe(e.Elapsed.Seconds())
		if !e.OK {
			s.failures.Inc()
		}
	case events.HookRun:
		result := "ok"
		if !e.OK {
			result = "failed"
		}
		m.hookDuration.WithLabelValues(e.Process, result).Observe(e.Elapsed.Seconds())
	}
}

// probeSeries returns the series of one probe, made on its first check.
func (m *Metrics) probeSeries(e *events.Event) probeSeries {
	k := probeKey{e.Process, e.Probe}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.probes[k]
	if !ok {
		s = probeSeries{
			duration: m.probeDuration.WithLabelValues(e.Process, e.Probe, e.ProbeKind),
			failures: m.probeFailures.WithLabelValues(e.Process, e.Probe, e.ProbeKind),
		}
		m.probes[k] = s
	}
	return s
}

// Orphan takes the rusage of an orphan the reaper reaped into the CPU time
// of the process whose tree it was seen in at the last scrape.
func (m *Metrics) Orphan(pid int, ru *syscall.Rusage) {
	m.tree.orphan(pid, cpuSeconds(ru.Utime, ru.Stime))
}

// Usage is what one process's tree uses, as /metrics reports it.
type Usage struct {
	CPUSeconds float64 // since the wrapper started, the exited members included
	RSSBytes   float64
	Processes  int
}

// Usage reads every process's tree from /proc now.
func (m *Metrics) Usage() map[string]Usage {
	sums, _ := m.tree.usage()
	out := make(map[string]Usage, len(sums))
	for name, t := range sums {
		out[name] = Usage{CPUSeconds: t.cpu, RSSBytes: t.rss, Processes: t.n}
	}
	return out
}

// RegisterLogger adds the count of the wrapper's own log lines dropped
// while its stdout was blocked.
func RegisterLogger(reg prometheus.Registerer, log *logline.Logger) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "log_lines_dropped_total",
		Help: "The wrapper's own log lines dropped while its stdout was blocked (the processes' lines are never dropped)."},
		func() float64 { return float64(log.Dropped()) }))
}

// RegisterSender adds the counters of the lifecycle event sender.
func RegisterSender(reg prometheus.Registerer, s *events.Sender) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "events_sent_total",
		Help: "Lifecycle events sent to the metrics server (METRICS_SERVER_ADDRESS)."},
		func() float64 { return float64(s.Sent.Load()) }))
	for i, reason := range events.DropReasons {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "events_dropped_total",
			Help:        "Lifecycle events not sent, by reason: queue_full (a burst beyond the queue), oversize, send_error.",
			ConstLabels: prometheus.Labels{"reason": reason}},
			func() float64 { return float64(s.Dropped[i].Load()) }))
	}
}
