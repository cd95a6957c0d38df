package sharedlock

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
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
	// Secret is the grant's own: 128 random bits, in the acquire answer
	// only; keepalive and release need it. Lease ids and tokens are not
	// secrets (etcd makes them from the member, the time and counters).
	Secret string `json:"secret"`
}

// Holder describes who holds a lock and how many wait for it.
// It shows no lease, token or secret: nothing a release needs.
type Holder struct {
	Name       string `json:"name"`
	Owner      string `json:"owner,omitempty"`
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
	ErrBadSecret = errors.New("the secret is not this grant's")
	ErrExpired   = errors.New("this grant has ended (its lease expired, or it was released): the lock is lost")
	ErrGone      = errors.New("the client went away")
)

type ownerRecord struct {
	Owner string    `json:"owner"`
	Since time.Time `json:"since"`
	TTL   int64     `json:"ttl"`
	// Secret is the SHA-256 of the grant's secret (hex): any server on the
	// same etcd can check a holder's calls, and etcd holds no secret.
	Secret string `json:"secret"`
}

// newSecret returns a grant's secret and its hash as the owner record keeps it.
func newSecret() (string, string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("grant secret: %w", err)
	}
	secret := hex.EncodeToString(b)
	return secret, hashSecret(secret), nil
}

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// sameSecret compares a caller's secret with a grant's hash in constant time.
func sameSecret(secret, hash string) bool {
	return subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(hash)) == 1
}

// locks does the lock operations on etcd.
type locks struct {
	cli     *clientv3.Client
	waitCli *clientv3.Client // waits: watches and waiters' keep-alives (see New)
	cfg     Config
	metrics *metrics

	pool *leasePool

	// ended counts the leases that have ended (revoked or expired): the
	// keys named after them stay in etcd's index until a compaction
	// (see compactor)
	ended *atomic.Int64

	mu       sync.Mutex
	released map[clientv3.LeaseID]int    // releases and revocations by this server not yet seen by watchExpiries: their deletes are not expiries
	held     map[clientv3.LeaseID]heldBy // leases this server granted that hold a lock: their renewals and release need not read etcd
}

// heldBy is a grant: the lock, its owner, its fencing token, and the TTL
// asked (the lease's place in the pool once released) and granted.
type heldBy struct {
	name, owner  string
	token        int64
	ttl, granted int64
	secret       string // its hash
}

// errStaleLease: an idle lease had expired in the pool (etcd or this server
// stalled for most of its TTL); the acquisition starts again with a new one.
var errStaleLease = errors.New("the pooled lease had expired")

func (l *locks) mutexPrefix(name string) string { return l.cfg.Prefix + "mutex/" + name }
func (l *locks) mutexKey(name string, lease clientv3.LeaseID) string {
	return l.mutexPrefix(name) + "/" + leaseHex(lease)
}
func (l *locks) ownerKey(name string, lease clientv3.LeaseID) string {
	return fmt.Sprintf("%sowner/%s/%x", l.cfg.Prefix, name, int64(lease))
}

// acquire takes the lock for owner with a lease of ttl. wait 0 tries once;
// otherwise it waits up to wait for the lock. When ctx ends (the client went
// away) while waiting, its place in the queue is removed; when it ends just
// as the lock was won, the lock is released.
func (l *locks) acquire(ctx context.Context, name, owner string, ttl, wait time.Duration) (Grant, Holder, error) {
	g, h, err := l.try(ctx, name, owner, ttl, wait, true)
	if errors.Is(err, errStaleLease) {
		g, h, err = l.try(ctx, name, owner, ttl, wait, false)
	}
	return g, h, err
}

// try is one acquisition, with a lease from the pool if pool and there is one.
func (l *locks) try(ctx context.Context, name, owner string, ttl, wait time.Duration, pool bool) (Grant, Holder, error) {
	began := time.Now()
	// The first calls are quick and need not end when the client goes
	// away (that is checked after them): without a cancellable context,
	// etcd's client spares a goroutine per call watching it.
	quick := context.WithoutCancel(ctx)
	asked := int64(ttl / time.Second)
	lease, pooled, err := l.lease(quick, asked, pool)
	if err != nil {
		l.metrics.etcdErrors.Inc()
		return Grant{}, Holder{}, err
	}
	fail := func(err error) (Grant, Holder, error) {
		l.revoke(lease.ID)
		return Grant{}, Holder{}, err
	}
	// a try or a wait that ended, or a client gone: the lease holds or
	// waits for nothing any more and serves a later acquisition
	giveUp := func(h Holder, err error) (Grant, Holder, error) {
		l.giveBack(name, lease.ID, asked, lease.TTL)
		return Grant{}, h, err
	}
	// the owner record is written while the mutex is tried: both need only
	// the lease, and the acquisition waits for both (one write's time)
	secret, secretHash, err := newSecret()
	if err != nil {
		return fail(err)
	}
	rec, _ := json.Marshal(ownerRecord{Owner: owner, Since: time.Now().UTC(), TTL: lease.TTL, Secret: secretHash})
	recorded, renewed := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := l.cli.Put(quick, l.ownerKey(name, lease.ID), string(rec), clientv3.WithLease(lease.ID))
		recorded <- err
	}()
	if pooled {
		// an idle lease's TTL restarts now, so that a holder's TTL counts
		// from its acquisition (at the same time as the writes: sent
		// after them, the writes would not share one sync of etcd's log)
		go func() {
			_, err := l.cli.KeepAliveOnce(quick, lease.ID)
			renewed <- err
		}()
	} else {
		renewed <- nil
	}
	// a free lock is taken in one transaction, whatever the wait
	token, first, err := l.enqueue(quick, name, lease.ID)
	werr := errors.Join(<-recorded, <-renewed)
	if pooled && (errors.Is(werr, rpctypes.ErrLeaseNotFound) || errors.Is(err, rpctypes.ErrLeaseNotFound)) {
		return Grant{}, Holder{}, errStaleLease
	}
	if werr != nil {
		l.metrics.etcdErrors.Inc()
		return fail(fmt.Errorf("record the owner, restart the TTL: %w", werr))
	}
	waited := false
	if err == nil && !first {
		err = ErrHeld
		if wait > 0 {
			waited = true
			// While the client waits, its request is its presence: the
			// server renews the waiter's lease only as long as that
			// request is open.
			wctx, cancel := context.WithTimeout(ctx, wait)
			if ka, kerr := l.waitCli.KeepAlive(wctx, lease.ID); kerr == nil {
				go func() {
					for range ka { // drained until wctx ends
					}
				}()
			}
			err = l.awaitTurn(wctx, name, token)
			cancel()
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrHeld):
		l.metrics.acquisitions.WithLabelValues("held").Inc()
		h, _ := l.inspect(quick, name)
		return giveUp(h, ErrHeld)
	case ctx.Err() != nil:
		l.metrics.acquisitions.WithLabelValues("gone").Inc()
		return giveUp(Holder{}, ErrGone)
	case errors.Is(err, context.DeadlineExceeded):
		l.metrics.acquisitions.WithLabelValues("timeout").Inc()
		h, _ := l.inspect(quick, name)
		return giveUp(h, ErrWaited)
	default:
		l.metrics.etcdErrors.Inc()
		return fail(fmt.Errorf("lock %s: %w", name, err))
	}
	if ctx.Err() != nil {
		l.metrics.acquisitions.WithLabelValues("gone").Inc()
		return giveUp(Holder{}, ErrGone) // won just as the client left: give it back
	}
	// the holder's TTL starts now, whatever the wait took
	if waited {
		// (the lease lapsed while waiting, and its key with it: the
		// waiter's client stalled past the TTL)
		if _, err := l.cli.KeepAliveOnce(ctx, lease.ID); errors.Is(err, rpctypes.ErrLeaseNotFound) {
			l.metrics.acquisitions.WithLabelValues("expired").Inc()
			return fail(ErrExpired)
		} else if err != nil {
			l.metrics.etcdErrors.Inc()
			return fail(fmt.Errorf("start the holder's TTL: %w", err))
		}
	}
	l.mu.Lock()
	if len(l.held) > 100000 { // expiries never seen (watch down): forget
		clear(l.held)
	}
	l.held[lease.ID] = heldBy{name: name, owner: owner, token: token, ttl: asked, granted: lease.TTL, secret: secretHash}
	l.mu.Unlock()
	l.metrics.acquisitions.WithLabelValues("acquired").Inc()
	l.metrics.wait.Observe(time.Since(began).Seconds())
	return Grant{Name: name, Owner: owner, Lease: leaseHex(lease.ID), Token: token, TTLSeconds: lease.TTL, Secret: secret}, Holder{}, nil
}

// enqueue puts lease id's key in the queue of lock name, unless it is there,
// and reads the queue's first key in the same transaction. It tells the
// key's create revision (the fencing token once it holds the lock) and
// whether it is first: whether it holds the lock. The queue is etcd's lock
// recipe: the oldest key holds the lock, each other waits for the deletion
// of the one created just before it.
func (l *locks) enqueue(ctx context.Context, name string, id clientv3.LeaseID) (rev int64, first bool, err error) {
	key := l.mutexKey(name, id)
	head := clientv3.OpGet(l.mutexPrefix(name)+"/", clientv3.WithFirstCreate()...)
	resp, err := l.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, "", clientv3.WithLease(id)), head).
		Else(clientv3.OpGet(key), head).
		Commit()
	if err != nil {
		return 0, false, err
	}
	rev = resp.Header.Revision
	if !resp.Succeeded {
		rev = resp.Responses[0].GetResponseRange().Kvs[0].CreateRevision
	}
	kvs := resp.Responses[1].GetResponseRange().Kvs
	return rev, len(kvs) == 0 || kvs[0].CreateRevision == rev, nil
}

// awaitTurn waits, through the client of the waits, until no key created
// before rev is left in the queue of lock name.
func (l *locks) awaitTurn(ctx context.Context, name string, rev int64) error {
	before := append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(rev-1))
	for {
		resp, err := l.waitCli.Get(ctx, l.mutexPrefix(name)+"/", before...)
		if err != nil {
			return err
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		if err := l.awaitDelete(ctx, resp.Kvs[0]); err != nil {
			return err
		}
	}
}

// awaitDelete waits for the deletion of key, as awaitTurn read it.
//
// The watch starts at etcd's current revision, not after that read: a watch
// from a revision etcd has already reached starts "unsynced", and etcd
// serves those from its history in a loop that runs every 100 ms, which
// cost each handoff up to 100 ms (the 10 ms handoffs and the 100 ms waits
// of etcd's own concurrency.Mutex, which watches from the revision it
// read). A deletion between the read and the watch's start would be missed,
// so once etcd has registered the watch the key is read again: gone, the
// wait is over; there, its deletion is still to come and the watch will
// see it at once.
//
// A key of the queue is named after its lease, and the pool gives a lease
// to a later acquisition: a key of that name created again is another place
// in the queue, behind this one, and the key waited for is gone. A watch
// that etcd ends (a compaction) ends the wait early: awaitTurn reads the
// queue again.
func (l *locks) awaitDelete(ctx context.Context, key *mvccpb.KeyValue) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range l.waitCli.Watch(wctx, string(key.Key), clientv3.WithFilterPut(), clientv3.WithCreatedNotify()) {
		if err := wr.Err(); err != nil {
			return ctx.Err() // nil: read the queue again
		}
		if wr.Created {
			resp, err := l.waitCli.Get(ctx, string(key.Key), clientv3.WithKeysOnly())
			if err != nil {
				return err
			}
			if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != key.CreateRevision {
				return nil
			}
			continue
		}
		if len(wr.Events) > 0 { // deletions only (WithFilterPut)
			return nil
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("etcd ended the watch of the queue")
}

// giveBack deletes what lease id holds or waits for on lock name (its
// lock key and its owner record) and keeps the lease for a later
// acquisition; when etcd does not answer, it revokes the lease.
func (l *locks) giveBack(name string, id clientv3.LeaseID, ttl, granted int64) {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.DialTimeout)
	defer cancel()
	if _, err := l.deleteKeys(ctx, name, id, 0); err != nil {
		l.metrics.etcdErrors.Inc()
		l.revoke(id)
		return
	}
	l.keep(ttl, id, granted)
}

// keep puts a lease that holds no key in the pool, or revokes it when the
// pool is full.
func (l *locks) keep(ttl int64, id clientv3.LeaseID, granted int64) {
	if l.pool.give(ttl, id, granted) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.DialTimeout)
	defer cancel()
	l.ended.Add(1)
	if _, err := l.cli.Revoke(ctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		l.metrics.etcdErrors.Inc()
	}
}

// mark counts (n 1) or uncounts (n -1) a delete of lease id's owner record
// that this server makes, so that watchExpiries does not take it for an
// expiry; the grant it made with id, if any, is over.
func (l *locks) mark(id clientv3.LeaseID, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.released) > 100000 { // deletes never seen (watch down): forget
		clear(l.released)
	}
	if l.released[id] += n; l.released[id] <= 0 {
		delete(l.released, id)
	}
	delete(l.held, id)
}

// revoke ends a lease: its keys (the waiter or holder key, the owner key)
// go with it.
// It returns etcd's error (rpctypes.ErrLeaseNotFound: it had expired).
func (l *locks) revoke(id clientv3.LeaseID) error {
	l.mark(id, 1)
	l.ended.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.DialTimeout)
	defer cancel()
	_, err := l.cli.Revoke(ctx, id)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		l.metrics.etcdErrors.Inc()
	}
	return err
}

// lease returns a lease of ttl seconds asked: an idle one from the pool
// (pooled: its TTL is to be restarted) if pool, or a new one.
func (l *locks) lease(ctx context.Context, ttl int64, pool bool) (*clientv3.LeaseGrantResponse, bool, error) {
	if pool {
		if id, granted, ok := l.pool.take(ttl); ok {
			return &clientv3.LeaseGrantResponse{ID: id, TTL: granted}, true, nil
		}
	}
	resp, err := l.cli.Grant(ctx, ttl)
	if err != nil {
		return nil, false, fmt.Errorf("grant lease: %w", err)
	}
	return resp, false, nil
}

// check verifies that lease holds name for owner, under the grant token
// when token is not 0, and returns the grant. cached lets it answer from
// the grants this server made, without reading etcd: only a release does,
// as its transaction verifies the grant again.
func (l *locks) check(ctx context.Context, name, owner, lease, secret string, token int64, cached bool) (clientv3.LeaseID, heldBy, error) {
	id, err := parseLease(lease)
	if err != nil {
		return 0, heldBy{}, err
	}
	if cached {
		l.mu.Lock()
		h, ok := l.held[id]
		l.mu.Unlock()
		if ok && h.name == name && h.owner == owner && (token == 0 || token == h.token) && sameSecret(secret, h.secret) {
			return id, h, nil
		}
	}
	// read the owner record and the lock key in one read: both live as
	// long as the grant
	resp, err := l.cli.Txn(ctx).Then(clientv3.OpGet(l.ownerKey(name, id)), clientv3.OpGet(l.mutexKey(name, id))).Commit()
	if err != nil {
		l.metrics.etcdErrors.Inc()
		return 0, heldBy{}, fmt.Errorf("read owner: %w", err)
	}
	rec, key := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
	if len(rec) == 0 || len(key) == 0 {
		return 0, heldBy{}, ErrExpired // expired or released
	}
	var r ownerRecord
	switch {
	case json.Unmarshal(rec[0].Value, &r) != nil || r.Owner != owner:
		return 0, heldBy{}, ErrNotHolder
	case token != 0 && token != key[0].CreateRevision:
		return 0, heldBy{}, ErrExpired // that grant ended: the lease was given again
	case !sameSecret(secret, r.Secret):
		return 0, heldBy{}, ErrBadSecret
	}
	return id, heldBy{name: name, owner: owner, token: key[0].CreateRevision, ttl: r.TTL, granted: r.TTL, secret: r.Secret}, nil
}

// keepAlive renews the lease once, for the holder that asks. It always
// reads etcd: another server may have taken the release.
func (l *locks) keepAlive(ctx context.Context, name, owner, lease, secret string, token int64) (int64, error) {
	id, _, err := l.check(ctx, name, owner, lease, secret, token, false)
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

// release gives the lock back: one transaction deletes the lock key and
// the owner record if the grant (its token) still holds, and the lease goes
// to the pool for a later acquisition.
func (l *locks) release(ctx context.Context, name, owner, lease, secret string, token int64) error {
	id, h, err := l.check(ctx, name, owner, lease, secret, token, true)
	if err != nil {
		return err
	}
	deleted, err := l.deleteKeys(ctx, name, id, h.token)
	if err == nil && !deleted {
		// what this server knew of the lease may be out of date (another
		// server took its release and granted it again): read etcd
		if id, h, err = l.check(ctx, name, owner, lease, secret, token, false); err != nil {
			return err
		}
		deleted, err = l.deleteKeys(ctx, name, id, h.token)
	}
	if err != nil {
		l.metrics.etcdErrors.Inc()
		return fmt.Errorf("release: %w", err)
	}
	if !deleted {
		return ErrExpired // the lease expired (its keys went with it)
	}
	l.keep(h.ttl, id, h.granted)
	l.metrics.releases.Inc()
	return nil
}

// deleteKeys deletes the lock key and the owner record of lease id on lock
// name, in one transaction, if token is 0 or the lock key's create revision
// (the grant's token); it reports whether it did.
func (l *locks) deleteKeys(ctx context.Context, name string, id clientv3.LeaseID, token int64) (bool, error) {
	l.mark(id, 1) // before the delete: watchExpiries may see it before the answer
	key := l.mutexKey(name, id)
	txn := l.cli.Txn(ctx)
	if token != 0 {
		txn = txn.If(clientv3.Compare(clientv3.CreateRevision(key), "=", token))
	}
	resp, err := txn.Then(clientv3.OpDelete(key), clientv3.OpDelete(l.ownerKey(name, id))).Commit()
	if err != nil || !resp.Succeeded {
		l.mark(id, -1)
		return false, err
	}
	if resp.Responses[1].GetResponseDeleteRange().Deleted == 0 {
		l.mark(id, -1) // no owner record went: nothing for watchExpiries to see
	}
	return true, nil
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
	h.Held, h.Waiters = true, len(resp.Kvs)-1
	id := clientv3.LeaseID(first.Lease)
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
// that expired because their holder stopped renewing. It forgets the grants
// this server made that ended elsewhere (expired, or released through
// another server). It watches from revision rev on, and again from where it
// was when a watch ends (etcd's leader lost, a compaction), until ctx ends.
func (l *locks) watchExpiries(ctx context.Context, rev int64) {
	for ctx.Err() == nil {
		for wr := range l.cli.Watch(clientv3.WithRequireLeader(ctx), l.cfg.Prefix+"owner/", clientv3.WithPrefix(), clientv3.WithFilterPut(), clientv3.WithRev(rev)) {
			if wr.CompactRevision > rev {
				rev = wr.CompactRevision // what was compacted is lost
			}
			for _, ev := range wr.Events {
				rev = ev.Kv.ModRevision + 1
				l.deleted(ctx, string(ev.Kv.Key))
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// deleted accounts for the delete of owner record k.
func (l *locks) deleted(ctx context.Context, k string) {
	id, err := parseLease(k[strings.LastIndexByte(k, '/')+1:])
	if err != nil {
		return
	}
	l.mu.Lock()
	released := l.released[id] > 0
	if released {
		if l.released[id]--; l.released[id] == 0 {
			delete(l.released, id)
		}
	} else {
		delete(l.held, id)
	}
	l.mu.Unlock()
	// a lease released through another server lives on in its pool
	if !released && !l.alive(ctx, id) {
		l.ended.Add(1)
		l.metrics.expiries.Inc()
	}
}

// alive tells whether etcd still has the lease (true when it cannot say).
func (l *locks) alive(ctx context.Context, id clientv3.LeaseID) bool {
	resp, err := l.cli.TimeToLive(ctx, id)
	return err != nil || resp.TTL > 0
}

func leaseHex(id clientv3.LeaseID) string { return strconv.FormatInt(int64(id), 16) }

func parseLease(s string) (clientv3.LeaseID, error) {
	v, err := strconv.ParseInt(s, 16, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("lease %q is not a lease id", s)
	}
	return clientv3.LeaseID(v), nil
}
