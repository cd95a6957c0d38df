package sharedlock

import (
	"context"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// The lock queue is etcd's lock recipe, on the keys etcd's own
// concurrency.Mutex uses: a Mutex of etcd's client on the same prefix and
// the server exclude each other, and each waits for the other in turn.
func TestQueueIsEtcdsLockRecipe(t *testing.T) {
	cfg := testConfig(t)
	s := start(t, cfg)
	ctx := context.Background()
	sess, err := concurrency.NewSession(s.waitCli, concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	m := concurrency.NewMutex(sess, cfg.Prefix+"mutex/db")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _ := s.acquire(t, "db", "a", 10, 0); code != 409 {
		t.Fatalf("acquire while etcd's Mutex holds the lock: %d, want 409", code)
	}
	type result struct {
		code int
		g    Grant
	}
	got := make(chan result, 1)
	go func() {
		code, g := s.acquire(t, "db", "a", 10, 10)
		got <- result{code, g}
	}()
	waitfor.Condition(t, 5*time.Second, "a waiter", func() bool { return s.holder(t, "db").Waiters == 1 })
	select {
	case r := <-got:
		t.Fatalf("acquire ended with %d while etcd's Mutex held the lock", r.code)
	default:
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.code != 200 {
		t.Fatalf("acquire after etcd's Mutex unlocked: %d, want 200", r.code)
	}
	// and the other way round: the Mutex waits for the server's holder
	locked := make(chan error, 1)
	go func() { locked <- m.Lock(ctx) }()
	waitfor.Condition(t, 5*time.Second, "a waiter", func() bool { return s.holder(t, "db").Waiters == 1 })
	select {
	case err := <-locked:
		t.Fatalf("etcd's Mutex locked (%v) while the server's grant held the lock", err)
	default:
	}
	if code := s.lease(t, "release", "db", r.g); code != 200 {
		t.Fatalf("release: %d", code)
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case err := <-locked:
		if err != nil {
			t.Fatal(err)
		}
	case <-lctx.Done():
		t.Fatal("etcd's Mutex did not get the lock after the release")
	}
}
