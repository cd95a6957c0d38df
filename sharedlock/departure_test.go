package sharedlock

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// handoffs counts the grants two contenders get on lock name in d, each
// taking it, releasing it and asking again with a wait; and how many of
// their waits ended in 423 (there is no other holder: none should).
func handoffs(t testing.TB, s *testServer, name string, d time.Duration) (grants, locked int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for _, owner := range []string{"x", "y"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				code, g := s.acquire(t, name, owner, 10, 5)
				mu.Lock()
				switch code {
				case 200:
					grants++
				case 423:
					locked++
				}
				mu.Unlock()
				if code == 200 {
					s.lease(t, "release", name, g)
				}
			}
		}()
	}
	wg.Wait()
	return grants, locked
}

// bestHandoffs is the best of three windows of handoffs: two contenders'
// rate varies by a tenth between windows of 4 s on this machine of two
// cores, shared with the clients; a wedged handoff gives about none.
func bestHandoffs(t testing.TB, s *testServer, name string) (grants, locked int) {
	for range 3 {
		g, l := handoffs(t, s, name, 4*time.Second)
		grants, locked = max(grants, g), locked+l
	}
	return grants, locked
}

// departures has 500 clients wait on lock name, held meanwhile, and close
// their connections at once (a rollout); it returns how long their places
// took to go, and releases the lock once etcd's history is compacted.
func departures(t testing.TB, s *testServer, name string) time.Duration {
	_, held := s.acquire(t, name, "holder", 30, 0)
	ctx, cancel := context.WithCancel(context.Background())
	var waiting sync.WaitGroup
	for i := range 500 {
		waiting.Add(1)
		go func() {
			defer waiting.Done()
			post(t, ctx, s.url+"/v1/locks/"+name+"/acquire", map[string]any{"owner": "w" + string(rune('a'+i%26)), "ttlSeconds": 10, "waitSeconds": 20}, nil)
		}()
	}
	waitfor.Condition(t, 30*time.Second, "500 waiters", func() bool { return s.holder(t, name).Waiters == 500 })
	cancel()
	waiting.Wait()
	left := time.Now()
	waitfor.Condition(t, 5*time.Second, "the departed waiters' places to go", func() bool { return s.holder(t, name).Waiters == 0 })
	gone := time.Since(left)
	// the 500 keys deleted stay in etcd's index until a compaction, and
	// the server compacts its embedded etcd after such a burst
	waitfor.Condition(t, 10*time.Second, "etcd's history compacted after the departures", func() bool {
		_, err := s.cli.Get(context.Background(), "x", clientv3.WithRev(held.Token))
		return errors.Is(err, rpctypes.ErrCompacted)
	})
	s.lease(t, "release", name, held)
	return gone
}

// 500 clients wait on a held lock and close their connections at once (a
// rollout): their places go within a second, and afterwards the handoff
// between two contenders goes on, on that lock and on another, and no wait
// ends in 423 while the lock is free. How fast it goes against the rate
// before (the goal, 80 %) is BenchmarkDepartures': a rate measured
// beside other test packages on two cores is not a test.
func TestDepartingWaitersLeaveNothingBehind(t *testing.T) {
	s := start(t, testConfig(t))
	before, _ := bestHandoffs(t, s, "busy")
	gone := departures(t, s, "busy")
	// under a second; the race detector (make test runs this module
	// under it too) slows the server several times over
	bound := time.Second
	if raceBuild {
		bound = 3 * time.Second
	}
	if gone > bound {
		t.Errorf("the departed waiters' places took %v to go, want under %v", gone, bound)
	}
	for _, name := range []string{"busy", "fresh"} {
		after, locked := bestHandoffs(t, s, name)
		t.Logf("%s: %d grants in the best 4 s before the departures, %d after, %d waits ended in 423", name, before, after, locked)
		// a wedged handoff gave 1 grant in 4 s against 81 before
		if after < before/4 || locked > 0 {
			t.Errorf("%s: %d grants after the departures against %d before, %d waits ended in 423 with the lock free", name, after, before, locked)
		}
	}
}
