package probe

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

// The threshold arithmetic of kubelet: a result changes after
// successThreshold consecutive successes or failureThreshold consecutive
// failures; readiness and startup start failed, liveness starts passed.
func TestThresholds(t *testing.T) {
	cases := []struct {
		name             string
		typ              Type
		success, failure int
		checks           string // s: success, f: failure
		want             string // the result after each check: + ok, - not ok; ! where it changed
	}{
		{"readiness defaults: one success makes ready", Readiness, 1, 3, "sffsfff", "+!+++++-!"},
		{"readiness needs 2 successes", Readiness, 2, 1, "ssfsss", "-+!-!-+!+"},
		{"liveness starts live, 3 failures kill", Liveness, 1, 3, "fffs", "++-!+!"},
		{"liveness: failures must be consecutive", Liveness, 1, 3, "ffsfffs", "+++++-!+!"},
		{"startup starts not started", Startup, 1, 30, "ffs", "--+!"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			th := NewThresholds(tc.typ, &config.Probe{SuccessThreshold: tc.success, FailureThreshold: tc.failure})
			got := ""
			for _, c := range tc.checks {
				ok, changed := th.Observe(c == 's')
				if ok {
					got += "+"
				} else {
					got += "-"
				}
				if changed {
					got += "!"
				}
			}
			if got != tc.want {
				t.Errorf("checks %s: got %s, want %s", tc.checks, got, tc.want)
			}
		})
	}
}

func TestFailuresCount(t *testing.T) {
	th := NewThresholds(Startup, &config.Probe{SuccessThreshold: 1, FailureThreshold: 3})
	for i, want := range []int{1, 2, 0, 1} {
		th.Observe(i == 2)
		if th.Failures() != want {
			t.Errorf("after check %d: %d consecutive failures, want %d", i, th.Failures(), want)
		}
	}
}

type scripted struct {
	mu      sync.Mutex
	results []error
	running int
	maxRun  int
	delay   time.Duration
}

func (s *scripted) Check(ctx context.Context) error {
	s.mu.Lock()
	s.running++
	if s.running > s.maxRun {
		s.maxRun = s.running
	}
	var err error
	if len(s.results) > 0 {
		err, s.results = s.results[0], s.results[1:]
	}
	s.mu.Unlock()
	defer func() { s.mu.Lock(); s.running--; s.mu.Unlock() }()
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

// A worker reports each check, applies the timeout, never overlaps checks
// and stops with its context.
func TestWorker(t *testing.T) {
	boom := errors.New("boom")
	c := &scripted{results: []error{nil, boom, boom}, delay: 0}
	p := &config.Probe{Period: 20 * time.Millisecond, Timeout: time.Second, SuccessThreshold: 1, FailureThreshold: 2}
	var got []Result
	w := &Worker{Type: Liveness, Probe: p, Checker: c, Report: func(r Result) { got = append(got, r) },
		Until: func(r Result) bool { return r.Checks == 3 }}
	w.Run(context.Background())
	if len(got) != 3 || !got[0].OK || !got[1].OK || got[1].Reason != "boom" || got[2].OK || !got[2].Changed {
		t.Errorf("results %+v", got)
	}

	slow := &scripted{delay: time.Hour}
	p2 := &config.Probe{Period: time.Millisecond, Timeout: 30 * time.Millisecond, SuccessThreshold: 1, FailureThreshold: 1}
	var reasons []string
	w2 := &Worker{Type: Readiness, Probe: p2, Checker: slow, Report: func(r Result) { reasons = append(reasons, r.Reason) },
		Until: func(r Result) bool { return r.Checks == 3 }}
	w2.Run(context.Background())
	if len(reasons) != 3 || !strings.HasPrefix(reasons[0], "timed out after 30ms") {
		t.Errorf("reasons %q", reasons)
	}
	if slow.maxRun != 1 {
		t.Errorf("%d checks ran at once", slow.maxRun)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		(&Worker{Type: Readiness, Probe: &config.Probe{Period: time.Hour, Timeout: time.Second, InitialDelay: time.Hour,
			SuccessThreshold: 1, FailureThreshold: 1}, Checker: c, Report: func(Result) {}}).Run(ctx)
		close(done)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the worker did not stop with its context")
	}
}
