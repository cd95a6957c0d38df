package state

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// The summary's counts, kept at each change, agree with a count over the
// whole table after any sequence of changes.
func TestSummaryAgreesWithTheTable(t *testing.T) {
	var names []string
	for i := 0; i < 20; i++ {
		names = append(names, fmt.Sprint("p", i))
	}
	s := New(names)
	phases := []Phase{Pending, Starting, Running, Backoff, Stopping, Completed, Failed, Stopped}
	rng := rand.New(rand.NewPCG(1, 2))
	for step := 0; step < 5000; step++ {
		s.Update(names[rng.IntN(len(names))], func(p *Process) {
			switch rng.IntN(4) {
			case 0:
				p.Phase = phases[rng.IntN(len(phases))]
			case 1:
				p.Started = !p.Started
			case 2:
				p.ProbeReady = !p.ProbeReady
			case 3:
				p.LiveFailed = !p.LiveFailed
			}
		})
		sum, _ := s.Summarize()
		procs, _ := s.Snapshot()
		unstarted, notReady := 0, 0
		for i := range procs {
			if procs[i].Phase == Pending || procs[i].Phase == Starting {
				unstarted++
			}
			if ok, _ := procs[i].Ready(); !ok {
				notReady++
			}
		}
		if sum.Unstarted != unstarted || sum.NotReady != notReady {
			t.Fatalf("step %d: summary %+v, table: %d unstarted, %d not ready", step, sum, unstarted, notReady)
		}
	}
	s.Update("no such process", func(p *Process) { p.Phase = Running })
	if sum, _ := s.Summarize(); sum.Unstarted > len(names) {
		t.Fatalf("an unknown name changed the summary: %+v", sum)
	}
}

func TestEssentialFailureStaysLive(t *testing.T) {
	s := New([]string{"main", "side"})
	for _, n := range []string{"main", "side"} {
		s.Update(n, func(p *Process) { p.Phase, p.Reason, p.Essential = Failed, "exited 3", n == "main" })
	}
	main, _ := s.Get("main")
	side, _ := s.Get("side")
	if ok, why := main.Live(); !ok {
		t.Errorf("an essential process that failed is not live (%s): kubelet would restart a container that is ending anyway", why)
	}
	if ok, _ := side.Live(); ok {
		t.Error("a process failed for good is live")
	}
	s.Update("side", func(p *Process) { p.Phase, p.Reason = Pending, "waiting for main (ready)" })
	side, _ = s.Get("side")
	if ok, why := side.Ready(); ok || why != "waiting for main (ready)" {
		t.Errorf("a pending process: ready %v, %q", ok, why)
	}
}
