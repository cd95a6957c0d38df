package metrics

import (
	"sync"
	"syscall"

	"github.com/process-wrapper/process-wrapper/wrapper/state"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat on Linux.
const userHZ = 100

// treeCollector reports the CPU time and memory of each process's tree,
// read from /proc at scrape time. A process's tree is its main pid, every
// descendant of it, and every process still in its process group (a
// grandchild whose parent exited is re-parented to the wrapper but keeps
// the group).
//
// CPU seconds stay a counter: the live tree's times include what each
// member's waited-for children used (cutime, cstime); when the main pid
// exits, the rusage wait4 gave for it is added to a running total; when an
// orphan seen in the tree is reaped by the wrapper, its rusage is added too.
// What could still vanish (a member that exited between two scrapes without
// anyone in the tree waiting for it) never makes the counter go down: it is
// clamped to the last value reported.
type treeCollector struct {
	st              *state.Store
	cpu, rss, pss   *prometheus.Desc
	count, readErrs *prometheus.Desc

	mu       sync.Mutex
	dead     map[string]float64 // reaped CPU seconds per process
	last     map[string]float64 // the last CPU value reported per process
	seen     map[int]string     // pid -> process, from the last scrape
	failures float64            // scrapes whose /proc reading failed
}

func newTreeCollector(st *state.Store) *treeCollector {
	p := []string{"process"}
	return &treeCollector{
		st:       st,
		cpu:      prometheus.NewDesc(ns+"_process_cpu_seconds_total", "CPU time (user and system) of the process's tree since the wrapper started, the exited members included.", p, nil),
		rss:      prometheus.NewDesc(ns+"_process_resident_memory_bytes", "Sum of the resident memory of the process's tree: pages shared between members (pre-fork workers) count once per member.", p, nil),
		pss:      prometheus.NewDesc(ns+"_process_proportional_memory_bytes", "Sum of the proportional set size (smaps_rollup Pss) of the process's tree: a shared page counts once in all, split between those who map it.", p, nil),
		count:    prometheus.NewDesc(ns+"_process_tree_processes", "Processes in the process's tree.", p, nil),
		readErrs: prometheus.NewDesc(ns+"_proc_read_errors_total", "Scrapes in which /proc could not be read.", nil, nil),
		dead:     map[string]float64{}, last: map[string]float64{}, seen: map[int]string{},
	}
}

func (c *treeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cpu, c.rss, c.pss, c.count, c.readErrs} {
		ch <- d
	}
}

// reaped adds the CPU time of an exited main pid (and what it waited for).
func (c *treeCollector) reaped(process string, seconds float64) {
	c.mu.Lock()
	c.dead[process] += seconds
	c.mu.Unlock()
}

// orphan adds the CPU time of a reaped orphan to the tree it was seen in.
func (c *treeCollector) orphan(pid int, seconds float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.seen[pid]; ok {
		c.dead[p] += seconds
		delete(c.seen, pid)
	}
}

type member struct {
	pid, ppid, pgrp int
	cpu             float64
	rss             int
	proc            procfs.Proc
}

type treeSums struct {
	cpu, rss, pss float64
	n             int
}

func (c *treeCollector) Collect(ch chan<- prometheus.Metric) {
	sums, failures := c.usage()
	for name, t := range sums {
		ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, t.cpu, name)
		ch <- prometheus.MustNewConstMetric(c.rss, prometheus.GaugeValue, t.rss, name)
		ch <- prometheus.MustNewConstMetric(c.pss, prometheus.GaugeValue, t.pss, name)
		ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(t.n), name)
	}
	ch <- prometheus.MustNewConstMetric(c.readErrs, prometheus.CounterValue, failures)
}

// usage reads the trees from /proc: each process's sums, and how many
// readings of /proc failed so far.
func (c *treeCollector) usage() (map[string]*treeSums, float64) {
	view, _ := c.st.Watch()
	sums := make(map[string]*treeSums, len(view.Procs))
	owner := map[int]string{} // main pid -> process
	for i := range view.Procs {
		sums[view.Procs[i].Name] = &treeSums{}
		if view.Procs[i].Pid > 0 {
			owner[view.Procs[i].Pid] = view.Procs[i].Name
		}
	}
	// /proc is read without the lock: the reaper's goroutine takes it to
	// add an orphan's rusage, and must never wait for a scrape
	procs, err := procfs.AllProcs()
	members := make(map[int]*member, len(procs))
	for _, p := range procs {
		s, err := p.Stat()
		if err != nil {
			continue // it exited since the listing
		}
		members[p.PID] = &member{pid: p.PID, ppid: s.PPID, pgrp: s.PGRP, rss: s.ResidentMemory(), proc: p,
			cpu: float64(int(s.UTime)+int(s.STime)+s.CUTime+s.CSTime) / userHZ}
	}
	seen := make(map[int]string, len(members))
	for pid, m := range members {
		name := treeOf(m, members, owner)
		if name == "" {
			continue
		}
		t := sums[name]
		t.cpu += m.cpu
		t.rss += float64(m.rss)
		if r, err := m.proc.ProcSMapsRollup(); err == nil {
			t.pss += float64(r.Pss)
		}
		t.n++
		seen[pid] = name
	}
	c.mu.Lock()
	if err != nil {
		c.failures++
	}
	failures := c.failures
	c.seen = seen
	for name, t := range sums {
		// an orphan reaped while /proc was read may count twice in this
		// value; the next scrapes absorb it (the counter never goes down)
		t.cpu = max(c.dead[name]+t.cpu, c.last[name])
		c.last[name] = t.cpu
	}
	c.mu.Unlock()
	return sums, failures
}

// treeOf returns the process whose tree m is in, or "": m is a main pid,
// or in a main pid's process group, or descends from one.
func treeOf(m *member, members map[int]*member, owner map[int]string) string {
	for hops := 0; m != nil && hops < 64; hops++ {
		if name, ok := owner[m.pid]; ok {
			return name
		}
		if name, ok := owner[m.pgrp]; ok {
			return name
		}
		m = members[m.ppid]
	}
	return ""
}

func cpuSeconds(utime, stime syscall.Timeval) float64 {
	return float64(utime.Sec+stime.Sec) + float64(utime.Usec+stime.Usec)/1e6
}
