package sharedlock

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	reg          *prometheus.Registry
	acquisitions *prometheus.CounterVec
	wait         prometheus.Histogram
	renewals     prometheus.Counter
	releases     prometheus.Counter
	expiries     prometheus.Counter
	etcdErrors   prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		acquisitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shared_lock_acquisitions_total",
			Help: "Acquire requests by result: acquired, held (try failed), timeout (wait ended), gone (client left), expired.",
		}, []string{"result"}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shared_lock_acquire_wait_seconds",
			Help:    "Time from an acquire request to the lock being held.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		renewals:   prometheus.NewCounter(prometheus.CounterOpts{Name: "shared_lock_renewals_total", Help: "Keep-alive calls that renewed a lease."}),
		releases:   prometheus.NewCounter(prometheus.CounterOpts{Name: "shared_lock_releases_total", Help: "Locks given back by their holder."}),
		expiries:   prometheus.NewCounter(prometheus.CounterOpts{Name: "shared_lock_expiries_total", Help: "Leases that expired because their holder stopped renewing."}),
		etcdErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "shared_lock_etcd_errors_total", Help: "etcd requests that failed."}),
	}
	m.reg.MustRegister(m.acquisitions, m.wait, m.renewals, m.releases, m.expiries, m.etcdErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range []string{"acquired", "held", "timeout", "gone", "expired"} {
		m.acquisitions.WithLabelValues(r)
	}
	return m
}
