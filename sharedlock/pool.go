package sharedlock

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// leasePool keeps the leases of released locks for the next acquisitions.
//
// Reusing a lease saves its grant (an etcd write) and, more important,
// keeps the keys of a lock few: a mutex key is named after its lease, and a
// deleted key stays in etcd's index until a compaction, so with a new lease
// per acquisition every try of a busy lock ranged over all the keys deleted
// since the last compaction (an hour of them) and slowed down with use.
//
// An idle lease holds no key. The pool renews it while it waits (the
// server renews no lease that holds a lock), revokes it after idleFor
// without use, and its taker restarts its TTL before using it, so that a
// holder's TTL always counts from its acquisition.
type leasePool struct {
	cli   *clientv3.Client
	ended *atomic.Int64 // the leases it revokes are counted there
	// idleFor is how long an unused lease is kept; maxIdle bounds the
	// leases kept in all.
	idleFor time.Duration
	maxIdle int

	mu   sync.Mutex
	idle map[int64][]idleLease // by TTL asked, most recently given back last
	n    int
}

type idleLease struct {
	id      clientv3.LeaseID
	ttl     int64     // asked
	granted int64     // by etcd (which raises a TTL below its minimum)
	since   time.Time // given back
	renewed time.Time // zero: to renew at the next tick
}

func newLeasePool(cli *clientv3.Client, ended *atomic.Int64) *leasePool {
	return &leasePool{cli: cli, ended: ended, idleFor: time.Minute, maxIdle: 32, idle: map[int64][]idleLease{}}
}

// take returns an idle lease of ttl seconds asked, and the TTL etcd
// granted, if there is one.
func (p *leasePool) take(ttl int64) (clientv3.LeaseID, int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.idle[ttl]
	if len(q) == 0 {
		return 0, 0, false
	}
	l := q[len(q)-1]
	if len(q) == 1 {
		delete(p.idle, ttl)
	} else {
		p.idle[ttl] = q[:len(q)-1]
	}
	p.n--
	return l.id, l.granted, true
}

// give keeps a lease that holds no key any more for a later acquisition;
// it reports false when the pool is full (the caller revokes the lease).
func (p *leasePool) give(ttl int64, id clientv3.LeaseID, granted int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n >= p.maxIdle {
		return false
	}
	p.idle[ttl] = append(p.idle[ttl], idleLease{id: id, ttl: ttl, granted: granted, since: time.Now()})
	p.n++
	return true
}

// run renews the idle leases and revokes those unused for idleFor, until
// ctx ends; then it revokes every idle lease. timeout bounds each call to
// etcd.
func (p *leasePool) run(ctx context.Context, timeout time.Duration) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.revoke(p.drain(func(idleLease) bool { return true }), timeout)
			return
		case now := <-t.C:
			p.revoke(p.drain(func(l idleLease) bool { return now.Sub(l.since) >= p.idleFor }), timeout)
			p.renew(ctx, now, timeout)
		}
	}
}

// drain takes the idle leases for which out is true out of the pool, to
// end them (or they have ended).
func (p *leasePool) drain(out func(idleLease) bool) []clientv3.LeaseID {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []clientv3.LeaseID
	for ttl, q := range p.idle {
		kept := q[:0]
		for _, l := range q {
			if out(l) {
				ids = append(ids, l.id)
			} else {
				kept = append(kept, l)
			}
		}
		if len(kept) == 0 {
			delete(p.idle, ttl)
		} else {
			p.idle[ttl] = kept
		}
	}
	p.n -= len(ids)
	p.ended.Add(int64(len(ids)))
	return ids
}

// renew renews the idle leases a third of their TTL after their last
// renewal, and drops those etcd no longer has or does not answer for.
func (p *leasePool) renew(ctx context.Context, now time.Time, timeout time.Duration) {
	var due []clientv3.LeaseID
	p.mu.Lock()
	for _, q := range p.idle {
		for i := range q {
			if now.Sub(q[i].renewed) >= time.Duration(q[i].ttl)*time.Second/3 {
				q[i].renewed = now
				due = append(due, q[i].id)
			}
		}
	}
	p.mu.Unlock()
	for _, id := range due {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := p.cli.KeepAliveOnce(rctx, id)
		cancel()
		if err != nil && ctx.Err() == nil {
			p.failed(id, err, timeout)
		}
	}
}

// failed drops an idle lease whose renewal failed with err, revoking it
// unless etcd no longer has it. Only a lease still idle is dropped: one
// taken meanwhile is its holder's, who restarts its TTL (or learns that it
// is gone) by itself.
func (p *leasePool) failed(id clientv3.LeaseID, err error, timeout time.Duration) {
	if gone := p.drain(func(l idleLease) bool { return l.id == id }); len(gone) > 0 && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		p.revoke(gone, timeout)
	}
}

func (p *leasePool) revoke(ids []clientv3.LeaseID, timeout time.Duration) {
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		p.cli.Revoke(ctx, id)
		cancel()
	}
}
