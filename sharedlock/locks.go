package sharedlock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Grant is a lock held: the lease that holds it and its fencing token, the
// etcd revision at which the holder's key was created, which only grows from
// one holder to the next.
type Grant struct {
	Name       string `json:"name"`
	Owner      string `json:"owner"`
	Lease      string `json:"lease"`
	Token      int64  `json:"token"`
	TTLSeconds int64  `json:"ttlSeconds"`
}

// Holder describes who holds a lock and how many wait for it.
type Holder struct {
	Name       string `json:"name"`
	Owner      string `json:"owner,omitempty"`
	Lease      string `json:"lease,omitempty"`
	Token      int64  `json:"token,omitempty"`
	TTLSeconds int64  `json:"ttlSeconds,omitempty"`
	Since      string `json:"since,omitempty"`
	Waiters    int    `json:"waiters"`
	Held       bool   `json:"held"`
}

// The errors of lock operations, each with its HTTP status in httpStatus.
var (
	ErrHeld      = errors.New("the lock is held by another owner")
	ErrWaited    = errors.New("the lock was not free before the wait ended")
	ErrNotHolder = errors.New("this owner does not hold this lease on this lock")
	ErrExpired   = errors.New("the lease has expired: the lock is lost")
	ErrGone      = errors.New("the client went away")
)

type ownerRecord struct {
	Owner string    `json:"owner"`
	Since time.Time `json:"since"`
	TTL   int64     `json:"ttl"`
}

// locks does the lock operations on etcd.
type locks struct {
	cli     *clientv3.Client
	cfg     Config
	metrics *metrics

	mu       sync.Mutex
	released map[clientv3.LeaseID]bool   // leases this server revoked: their deletes are not expiries
	held     map[clientv3.LeaseID]heldBy // leases this server granted that hold a lock: their renewals and release need not read the owner record
}

type heldBy struct{ name, owner string }

func (l *locks) mutexPrefix(name string) string { return l.cfg.Prefix + "mutex/" + name }
func (l *locks) ownerKey(name string, lease clientv3.LeaseID) string {
	return fmt.Sprintf("%sowner/%s/%x", l.cfg.Prefix, name, int64(lease))
}

// noKeepAlive is an ended context: a session made with it never renews its
// lease by itself, so a lock lives only as long as its holder renews it.
var noKeepAlive = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// acquire takes the lock for owner with a lease of ttl. wait 0 tries once;
// otherwise it waits up to wait for the lock. When ctx ends (the client went
// away) while waiting, its place in the queue is removed; when it ends just
// as the lock was won, the lock is released.
func (l *locks) acquire(ctx context.Context, name, owner string, ttl, wait time.Duration) (Grant, Holder, error) {
	began := time.Now()
	// The first three calls are quick and need not end when the client
	// goes away (that is checked after them): without a cancellable
	// context, etcd's client spares a goroutine per call watching it.
	quick := context.WithoutCancel(ctx)
	lease, err := l.cli.Grant(quick, int64(ttl/time.Second))
	if err != nil {
		l.metrics.etcdErrors.Inc()
		return Grant{}, Holder{}, fmt.Errorf("grant lease: %w", err)
	}
	fail := func(err error) (Grant, Holder, error) {
		l.revoke(lease.ID)
		return Grant{}, Holder{}, err
	}
	// the owner record is written while the mutex is tried: both need only
	// the lease, and the acquisition waits for both (one write's time)
	rec, _ := json.Marshal(ownerRecord{Owner: owner, Since: time.Now().UTC(), TTL: lease.TTL})
	recorded := make(chan error, 1)
	go func() {
		_, err := l.cli.Put(quick, l.ownerKey(name, lease.ID), string(rec), clientv3.WithLease(lease.ID))
		recorded <- err
	}()
	sess, err := concurrency.NewSession(l.cli, concurrency.WithLease(lease.ID), concurrency.WithContext(noKeepAlive))
	if err != nil {
		<-recorded
		l.metrics.etcdErrors.Inc()
		return fail(fmt.Errorf("session: %w", err))
	}
	m := concurrency.NewMutex(sess, l.mutexPrefix(name))
	// a free lock is taken in one transaction, whatever the wait
	err = m.TryLock(quick)
	if perr := <-recorded; perr != nil {
		l.metrics.etcdErrors.Inc()
		return fail(fmt.Errorf("record owner: %w", perr))
	}
	waited := false
	if errors.Is(err, concurrency.ErrLocked) && wait > 0 {
		waited = true
		// While the client waits, its request is its presence: the server
		// renews the waiter's lease only as long as that request is open.
		wctx, cancel := context.WithTimeout(ctx, wait)
		if ka, kerr := l.cli.KeepAlive(wctx, lease.ID); kerr == nil {
			go func() {
				for range ka { // drained until wctx ends
				}
			}()
		}
		err = m.Lock(wctx)
		cancel()
	}
	switch {
	case err == nil:
	case errors.Is(err, concurrency.ErrLocked):
		l.metrics.acquisitions.WithLabelValues("held").Inc()
		l.revoke(lease.ID)
		h, _ := l.inspect(context.WithoutCancel(ctx), name)
		return Grant{}, h, ErrHeld
	case ctx.Err() != nil:
		l.metrics.acquisitions.WithLabelValues("gone").Inc()
		return fail(ErrGone)
	case errors.Is(err, context.DeadlineExceeded):
		l.metrics.acquisitions.WithLabelValues("timeout").Inc()
		l.revoke(lease.ID)
		h, _ := l.inspect(context.WithoutCancel(ctx), name)
		return Grant{}, h, ErrWaited
	case errors.Is(err, concurrency.ErrSessionExpired):
		l.metrics.acquisitions.WithLabelValues("expired").Inc()
		return fail(ErrExpired)
	default:
		l.metrics.etcdErrors.Inc()
		return fail(fmt.Errorf("lock %s: %w", name, err))
	}
	// the fencing token: the create revision of the holder's key, which the
	// one transaction of TryLock returns; after a wait, read it
	token := m.Header().Revision
	if waited {
		resp, err := l.cli.Get(ctx, m.Key())
		if err != nil || len(resp.Kvs) == 0 {
			if ctx.Err() != nil {
				l.metrics.acquisitions.WithLabelValues("gone").Inc()
				return fail(ErrGone) // won just as the client left: give it back
			}
			l.metrics.etcdErrors.Inc()
			return fail(fmt.Errorf("read the lock key: %v", err))
		}
		token = resp.Kvs[0].CreateRevision
	}
	if ctx.Err() != nil {
		l.metrics.acquisitions.WithLabelValues("gone").Inc()
		return fail(ErrGone) // won just as the client left: give it back
	}
	// the holder's TTL starts now, whatever the wait took
	if waited {
		if _, err := l.cli.KeepAliveOnce(ctx, lease.ID); err != nil {
			l.metrics.etcdErrors.Inc()
			return fail(fmt.Errorf("start the holder's TTL: %w", err))
		}
	}
	l.mu.Lock()
	if len(l.held) > 100000 { // expiries never seen (watch down): forget
		clear(l.held)
	}
	l.held[lease.ID] = heldBy{name: name, owner: owner}
	l.mu.Unlock()
	l.metrics.acquisitions.WithLabelValues("acquired").Inc()
	l.metrics.wait.Observe(time.Since(began).Seconds())
	return Grant{Name: name, Owner: owner, Lease: leaseHex(lease.ID), Token: token, TTLSeconds: lease.TTL}, Holder{}, nil
}

// revoke ends a lease: its keys (the waiter or holder key, the owner key)
// go with it.
// It returns etcd's error (rpctypes.ErrLeaseNotFound: it had expired).
func (l *locks) revoke(id clientv3.LeaseID) error {
	l.mu.Lock()
	if len(l.released) > 100000 { // deletes never seen (watch down): forget
		clear(l.released)
	}
	l.released[id] = true
	delete(l.held, id)
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.DialTimeout)
	defer cancel()
	_, err := l.cli.Revoke(ctx, id)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		l.metrics.etcdErrors.Inc()
	}
	return err
}

// check verifies that lease holds (or waits for) name for owner.
func (l *locks) check(ctx context.Context, name, owner, lease string) (clientv3.LeaseID, error) {
	id, err := parseLease(lease)
	if err != nil {
		return 0, err
	}
	l.mu.Lock()
	h, granted := l.held[id]
	l.mu.Unlock()
	if granted {
		// granted here: no read; an expired lease shows in the renewal or
		// the revocation that follows
		if h.name != name || h.owner != owner {
			return 0, ErrNotHolder
		}
		return id, nil
	}
	resp, err := l.cli.Get(ctx, l.ownerKey(name, id))
	if err != nil {
		l.metrics.etcdErrors.Inc()
		return 0, fmt.Errorf("read owner: %w", err)
	}
	if len(resp.Kvs) == 0 {
		// the owner key lives as long as the lease: gone means expired or released
		return 0, ErrExpired
	}
	var rec ownerRecord
	if json.Unmarshal(resp.Kvs[0].Value, &rec) != nil || rec.Owner != owner {
		return 0, ErrNotHolder
	}
	return id, nil
}

// keepAlive renews the lease once, for the holder that asks.
func (l *locks) keepAlive(ctx context.Context, name, owner, lease string) (int64, error) {
	id, err := l.check(ctx, name, owner, lease)
	if err != nil {
		return 0, err
	}
	resp, err := l.cli.KeepAliveOnce(ctx, id)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return 0, ErrExpired
	}
	if err != nil {
		l.metrics.etcdErrors.Inc()
		return 0, fmt.Errorf("keep alive: %w", err)
	}
	l.metrics.renewals.Inc()
	return resp.TTL, nil
}

// release gives the lock back.
func (l *locks) release(ctx context.Context, name, owner, lease string) error {
	id, err := l.check(ctx, name, owner, lease)
	if err != nil {
		return err
	}
	if err := l.revoke(id); errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return ErrExpired
	}
	l.metrics.releases.Inc()
	return nil
}

// inspect tells who holds name and how many wait.
func (l *locks) inspect(ctx context.Context, name string) (Holder, error) {
	h := Holder{Name: name}
	resp, err := l.cli.Get(ctx, l.mutexPrefix(name)+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		l.metrics.etcdErrors.Inc()
		return h, fmt.Errorf("read the lock: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return h, nil
	}
	first := resp.Kvs[0]
	h.Held, h.Waiters, h.Token = true, len(resp.Kvs)-1, first.CreateRevision
	id := clientv3.LeaseID(first.Lease)
	h.Lease = leaseHex(id)
	if o, err := l.cli.Get(ctx, l.ownerKey(name, id)); err == nil && len(o.Kvs) > 0 {
		var rec ownerRecord
		if json.Unmarshal(o.Kvs[0].Value, &rec) == nil {
			h.Owner, h.Since = rec.Owner, rec.Since.Format(time.RFC3339)
		}
	}
	if ttl, err := l.cli.TimeToLive(ctx, id); err == nil {
		h.TTLSeconds = ttl.TTL
	}
	return h, nil
}

// watchExpiries counts the owner keys that go without a release: leases
// that expired because their holder stopped renewing.
func (l *locks) watchExpiries(ctx context.Context) {
	for wr := range l.cli.Watch(clientv3.WithRequireLeader(ctx), l.cfg.Prefix+"owner/", clientv3.WithPrefix(), clientv3.WithFilterPut()) {
		for _, ev := range wr.Events {
			k := string(ev.Kv.Key)
			id, err := parseLease(k[strings.LastIndexByte(k, '/')+1:])
			if err != nil {
				continue
			}
			l.mu.Lock()
			released := l.released[id]
			delete(l.released, id)
			delete(l.held, id)
			l.mu.Unlock()
			if !released {
				l.metrics.expiries.Inc()
			}
		}
	}
}

func leaseHex(id clientv3.LeaseID) string { return strconv.FormatInt(int64(id), 16) }

func parseLease(s string) (clientv3.LeaseID, error) {
	v, err := strconv.ParseInt(s, 16, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("lease %q is not a lease id", s)
	}
	return clientv3.LeaseID(v), nil
}
