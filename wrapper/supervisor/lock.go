package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
	"github.com/process-wrapper/process-wrapper/wrapper/lockclient"
	"github.com/process-wrapper/process-wrapper/wrapper/state"
)

// lockWait is how long one acquire request waits on the server before the
// runner asks again (and checks for the shutdown meanwhile).
const lockWait = 10 * time.Second

func (r *runner) lockOwner() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%s/%d", host, r.p.Name, os.Getpid())
}

// acquireLock blocks until the process's shared lock is held, or the
// shutdown begins (ok false). Waiting shows in the state (and so in the
// /readiness body) and in one log line per holder.
func (r *runner) acquireLock() (lockclient.Lease, bool) {
	s, l := r.sup, r.p.SharedLock
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stopping:
			cancel()
		case <-r.stopRequested():
			cancel()
		case <-ctx.Done():
		}
	}()
	lastWhy, retry := "", time.Second
	wait := time.Duration(0) // try first, so that waiting shows at once
	for {
		lease, err := s.opt.Locks.TryAcquire(ctx, l.Name, r.lockOwner(), l.TTL, wait)
		wait = lockWait
		if err == nil {
			// The server started the lease's TTL before its writes and its
			// answer, however long those took: a renewal sent now is a
			// start the wrapper knows to have come no earlier.
			sent := time.Now()
			if err = s.opt.Locks.KeepAlive(ctx, lease); err == nil {
				lease.Renewed = sent
				r.log().Info("shared lock acquired", "process", r.p.Name, "lock", l.Name, "token", lease.Token, "hold_until", string(l.HoldUntil))
				return lease, true
			}
			r.releaseLock(lease) // or it expires with its TTL
			err = fmt.Errorf("the lock was granted but its first renewal failed: %w", err)
		}
		if ctx.Err() != nil {
			return lockclient.Lease{}, false
		}
		var held *lockclient.Held
		why := ""
		if errors.As(err, &held) {
			why = fmt.Sprintf("waiting for shared lock %s (held by %s)", l.Name, held.Holder)
		} else {
			why = fmt.Sprintf("waiting for shared lock %s: %v", l.Name, err)
		}
		if why != lastWhy {
			r.log().Info("waiting for shared lock", "process", r.p.Name, "lock", l.Name, "reason", why)
			r.setState(func(p *state.Process) { p.Phase, p.Reason = state.Starting, why })
			lastWhy = why
		}
		if held == nil { // the server did not wait for us: do not spin
			t := time.NewTimer(retry)
			select {
			case <-ctx.Done():
				t.Stop()
				return lockclient.Lease{}, false
			case <-t.C:
			}
			retry = min(2*retry, 10*time.Second)
		}
	}
}

// lostLock says that the lock can no longer be trusted: the process must be
// dead by deadline (before another holder can get the lock).
type lostLock struct {
	reason   string
	deadline time.Time
}

// keeper renews a held lock until stopped, and reports its loss. With
// holdUntil ready it gives the lock back once the process is ready.
type keeper struct {
	cancel   context.CancelFunc
	done     chan struct{}
	lost     chan lostLock
	released bool // set before done closes
}

// keep renews lease every TTL/3. When renewals have failed for half the TTL
// the lock is reported lost with the time by which the process must be
// dead (the sending of the last renewal that succeeded plus the TTL, less a
// second); when the server says the lease is gone, at once.
func (r *runner) keep(lease lockclient.Lease, ttl time.Duration, untilReady bool) *keeper {
	ctx, cancel := context.WithCancel(context.Background())
	k := &keeper{cancel: cancel, done: make(chan struct{}), lost: make(chan lostLock, 1)}
	go func() {
		defer close(k.done)
		lastOK := lease.Renewed
		tick := time.NewTicker(ttl / 3)
		defer tick.Stop()
		for {
			var changed <-chan struct{}
			if untilReady {
				p, _, ch := r.sup.opt.State.WatchOne(r.p.Name)
				if ok, _ := p.Ready(); ok {
					r.releaseLock(lease)
					k.released = true
					return
				}
				changed = ch
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
				continue
			case <-tick.C:
			}
			// a renewal counts from when it was sent: the server renews
			// the lease at some time between that and the answer, and a
			// slow answer must not push the deadline past the lease's end
			sent := time.Now()
			rctx, rcancel := context.WithTimeout(ctx, ttl/3)
			err := r.sup.opt.Locks.KeepAlive(rctx, lease)
			rcancel()
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				lastOK = sent
				continue
			}
			r.log().Warn("shared lock renewal failed", "process", r.p.Name, "lock", lease.Name, "err", err)
			if errors.Is(err, lockclient.ErrLost) {
				k.lost <- lostLock{reason: err.Error(), deadline: time.Now()}
				return
			}
			if time.Since(lastOK) >= ttl/2 {
				k.lost <- lostLock{reason: fmt.Sprintf("no renewal for %s: %v", time.Since(lastOK).Round(time.Millisecond), err),
					deadline: lastOK.Add(ttl - time.Second)}
				return
			}
		}
	}()
	return k
}

// lostCh is the channel of the lock's loss (nil, never ready, without a lock).
func (k *keeper) lostCh() <-chan lostLock {
	if k == nil {
		return nil
	}
	return k.lost
}

func (k *keeper) stop() {
	if k == nil {
		return
	}
	k.cancel()
	<-k.done
}

// releaseLock gives the lock back (best effort: a lock not released
// expires with its TTL).
func (r *runner) releaseLock(lease lockclient.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.sup.opt.Locks.Release(ctx, lease); err != nil {
		r.log().Warn("shared lock release failed: it expires with its TTL", "process", r.p.Name, "lock", lease.Name, "err", err)
		return
	}
	r.log().Info("shared lock released", "process", r.p.Name, "lock", lease.Name)
}

// holdUntil returns when the lock is to be given back.
func (r *runner) holdUntil() config.HoldUntil {
	if r.p.SharedLock == nil {
		return ""
	}
	return r.p.SharedLock.HoldUntil
}
