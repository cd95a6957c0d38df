package sharedlock

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// handle renews or releases grant g naming it by its token too.
func (s *testServer) handle(t testing.TB, op string, g Grant) int {
	return post(t, context.Background(), s.url+"/v1/locks/"+g.Name+"/"+op, map[string]any{"owner": g.Owner, "lease": g.Lease, "token": g.Token, "secret": g.Secret}, nil)
}

func leaseTTL(t testing.TB, cli *clientv3.Client, lease string) int64 {
	id, err := parseLease(lease)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.TimeToLive(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return resp.TTL
}

// A released lease serves the next acquisition (the lock keeps a few keys
// however often it is taken), and a request about an ended grant cannot
// touch the grant that uses the lease now.
func TestReleasedLeaseServesTheNextHolder(t *testing.T) {
	s := start(t, testConfig(t))
	_, a1 := s.acquire(t, "job", "a", 10, 0)
	if code := s.handle(t, "release", a1); code != 200 {
		t.Fatalf("release: %d", code)
	}
	code, b := s.acquire(t, "job", "b", 10, 0)
	if code != 200 || b.Lease != a1.Lease || b.Token <= a1.Token {
		t.Fatalf("acquire after a release: %d %+v, want lease %s again with a greater token", code, b, a1.Lease)
	}
	// a's handle names the same lease: it is b's now
	for _, op := range []string{"keepalive", "release"} {
		if code := s.lease(t, op, "job", a1); code != 403 {
			t.Errorf("%s by the former holder: %d, want 403", op, code)
		}
	}
	if code := s.handle(t, "release", b); code != 200 {
		t.Fatalf("release b: %d", code)
	}
	_, a2 := s.acquire(t, "job", "a", 10, 0)
	if a2.Lease != a1.Lease || a2.Token <= b.Token {
		t.Fatalf("a again: %+v", a2)
	}
	// a late call about a's first grant: the token tells it from the second
	for _, op := range []string{"keepalive", "release"} {
		if code := s.handle(t, op, a1); code != 410 {
			t.Errorf("%s of an ended grant: %d, want 410", op, code)
		}
	}
	if h := s.holder(t, "job"); !h.Held || h.Owner != "a" {
		t.Fatalf("after the late calls: %+v, want a's second grant", h)
	}
	if code := s.handle(t, "keepalive", a2); code != 200 {
		t.Errorf("keepalive: %d", code)
	}
	if code := s.handle(t, "release", a2); code != 200 {
		t.Errorf("release: %d", code)
	}
	// releases are not expiries
	waitfor.Condition(t, 5*time.Second, "the releases to be seen", func() bool {
		s.locks.mu.Lock()
		defer s.locks.mu.Unlock()
		return len(s.locks.released) == 0
	})
	if v := metricValue(t, s, "shared_lock_expiries_total"); v != 0 {
		t.Errorf("expiries: %v after releases only", v)
	}
	if v := metricValue(t, s, "shared_lock_releases_total"); v != 3 {
		t.Errorf("releases: %v, want 3", v)
	}
}

// An idle lease outlives its TTL (the server renews it while nobody holds
// it), and the holder it goes to gets its whole TTL from the acquisition.
func TestPooledLeaseStartsAWholeTTL(t *testing.T) {
	s := start(t, testConfig(t))
	const short = 2
	_, a := s.acquire(t, "short", "a", short, 0)
	s.handle(t, "release", a)
	released := time.Now()
	waitfor.Condition(t, 10*time.Second, "two TTLs to pass", func() bool { return time.Since(released) > 2*short*time.Second })
	if left := leaseTTL(t, s.Client(), a.Lease); left <= 0 {
		t.Fatalf("the idle lease expired: TTL %d", left)
	}
	if _, b := s.acquire(t, "short", "b", short, 0); b.Lease != a.Lease {
		t.Errorf("b got lease %s, want the idle %s", b.Lease, a.Lease)
	}

	// a lease whose TTL ran down while idle gets it whole again
	const ttl = 10
	_, c := s.acquire(t, "long", "c", ttl, 0)
	s.handle(t, "release", c)
	waitfor.Condition(t, 10*time.Second, "the idle lease's TTL to run down", func() bool { return leaseTTL(t, s.Client(), c.Lease) <= ttl-3 })
	_, d := s.acquire(t, "long", "d", ttl, 0)
	if d.Lease != c.Lease {
		t.Fatalf("d got lease %s, want the idle %s", d.Lease, c.Lease)
	}
	if left := leaseTTL(t, s.Client(), d.Lease); left < ttl-1 {
		t.Errorf("the new holder's TTL: %d s left, want its whole %d s", left, ttl)
	}
}

// Leases unused for a while are revoked, and so are the idle ones when the
// server closes.
func TestIdleLeasesAreRevoked(t *testing.T) {
	s := start(t, testConfig(t))
	s.locks.pool.mu.Lock()
	s.locks.pool.idleFor = 500 * time.Millisecond
	s.locks.pool.mu.Unlock()
	_, a := s.acquire(t, "idle", "a", 60, 0)
	s.handle(t, "release", a)
	waitfor.Condition(t, 5*time.Second, "the unused lease to be revoked", func() bool { return leaseTTL(t, s.Client(), a.Lease) == -1 })

	pool := newLeasePool(s.Client(), new(atomic.Int64))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pool.run(ctx, time.Second) }()
	g, err := s.Client().Grant(context.Background(), 60)
	if err != nil {
		t.Fatal(err)
	}
	pool.give(60, g.ID, g.TTL)
	cancel()
	<-done
	if left := leaseTTL(t, s.Client(), leaseHex(g.ID)); left != -1 {
		t.Errorf("an idle lease outlived its pool: TTL %d", left)
	}
}

// Several servers on one etcd: a holder may renew and release through any
// of them, and a server that granted a lease does not trust what it knew
// of it once another server took its release.
func TestAnotherServerRenewsAndReleases(t *testing.T) {
	cfg := testConfig(t)
	s1 := start(t, cfg)
	cfg2 := cfg
	cfg2.Endpoints = []string{cfg.EmbeddedClientURL}
	s2 := start(t, cfg2)

	_, a := s1.acquire(t, "multi", "a", 10, 0)
	if code := s2.handle(t, "keepalive", a); code != 200 {
		t.Errorf("keepalive through the other server: %d", code)
	}
	if code := s2.lease(t, "keepalive", "multi", Grant{Owner: "b", Lease: a.Lease, Secret: a.Secret}); code != 403 {
		t.Errorf("keepalive by another owner through the other server: %d", code)
	}
	wrong := a
	wrong.Token++
	if code := s2.handle(t, "keepalive", wrong); code != 410 {
		t.Errorf("keepalive with another token: %d", code)
	}
	if code := s2.handle(t, "release", a); code != 200 {
		t.Fatalf("release through the other server: %d", code)
	}
	// s1 granted the lease; s2 keeps it now and grants it again
	_, a2 := s2.acquire(t, "multi", "a", 10, 0)
	if a2.Lease != a.Lease {
		t.Fatalf("s2 granted %s, want the lease it took back, %s", a2.Lease, a.Lease)
	}
	if code := s1.handle(t, "keepalive", a); code != 410 {
		t.Errorf("keepalive of the ended grant through the server that made it: %d, want 410", code)
	}
	if code := s1.lease(t, "release", "multi", a2); code != 200 {
		t.Errorf("release (no token) through the server that made the first grant: %d", code)
	}
	if h := s1.holder(t, "multi"); h.Held {
		t.Errorf("held after the release: %+v", h)
	}
}

// An idle lease that expired in the pool (etcd or the server stalled for
// most of its TTL) costs the next acquisition a new lease, not a failure.
func TestExpiredIdleLeaseIsReplaced(t *testing.T) {
	s := start(t, testConfig(t))
	_, a := s.acquire(t, "stale", "a", 10, 0)
	s.handle(t, "release", a)
	id, _ := parseLease(a.Lease)
	if _, err := s.Client().Revoke(context.Background(), id); err != nil { // behind the pool's back
		t.Fatal(err)
	}
	code, b := s.acquire(t, "stale", "b", 10, 0)
	if code != 200 || b.Lease == a.Lease || b.Token <= a.Token {
		t.Fatalf("acquire after the idle lease expired: %d %+v", code, b)
	}
	if left := leaseTTL(t, s.Client(), b.Lease); left < 9 {
		t.Errorf("the new lease's TTL: %d", left)
	}
	if h := s.holder(t, "stale"); h.Owner != "b" {
		t.Errorf("holder %+v", h)
	}
}

// A renewal of an idle lease that fails (etcd slow or away) drops the lease
// from the pool, unless an acquisition took it meanwhile: then it is the
// holder's and stays alive.
func TestFailedRenewalSparesATakenLease(t *testing.T) {
	s := start(t, testConfig(t))
	pool := newLeasePool(s.Client(), new(atomic.Int64))
	lease := func() clientv3.LeaseID {
		g, err := s.Client().Grant(context.Background(), 60)
		if err != nil {
			t.Fatal(err)
		}
		return g.ID
	}
	idle, taken := lease(), lease()
	pool.give(60, idle, 60)
	pool.give(60, taken, 60)
	if id, _, ok := pool.take(60); !ok || id != taken {
		t.Fatalf("took %x, want the last given %x", id, taken)
	}
	timeout := errors.New("context deadline exceeded")
	pool.failed(taken, timeout, time.Second)
	pool.failed(idle, timeout, time.Second)
	if left := leaseTTL(t, s.Client(), leaseHex(taken)); left <= 0 {
		t.Errorf("the lease an acquisition took was revoked after a failed renewal: TTL %d", left)
	}
	if left := leaseTTL(t, s.Client(), leaseHex(idle)); left != -1 {
		t.Errorf("the idle lease whose renewal failed is still there: TTL %d", left)
	}
	if _, _, ok := pool.take(60); ok {
		t.Error("the idle lease whose renewal failed is still in the pool")
	}
}
