package sharedlock

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/process-wrapper/process-wrapper/internal/logline"
)

// compactor compacts the embedded etcd's history soon after many leases
// have ended.
//
// A lock's queue is a range of keys named after leases. etcd keeps a
// deleted key in its index until a compaction, and every read of the queue
// (each acquisition, each turn of a waiter) walks those too: after 500
// waiters left at once, the handoff of their lock ran at 80 % of its rate
// until the hourly compaction. The leases the pool reuses leave no such
// keys (their names come back); the others are counted when they end
// (locks.ended), and once every tick etcd is compacted to its current
// revision when at least after of them ended since the last compaction.
//
// Only the embedded etcd, which is the server's own: the history of an
// external cluster is its operators' (their --auto-compaction-*).
type compactor struct {
	cli   *clientv3.Client
	ended *atomic.Int64
	log   *logline.Logger
	every time.Duration
	after int64
}

func (c *compactor) run(ctx context.Context, timeout time.Duration) {
	t := time.NewTicker(c.every)
	defer t.Stop()
	var done int64 // ended leases the last compaction covered
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := c.ended.Load()
		if n-done < c.after {
			continue
		}
		rev, err := c.compact(ctx, timeout)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("compact etcd's history", "err", err)
			}
			continue
		}
		c.log.Info("compacted etcd's history", "revision", rev, "ended_leases", n-done)
		done = n
	}
}

// compact compacts etcd to its current revision and returns it.
func (c *compactor) compact(ctx context.Context, timeout time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := c.cli.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("read the revision: %w", err)
	}
	rev := resp.Header.Revision
	// (ErrCompacted: etcd's own periodic compaction went as far)
	if _, err := c.cli.Compact(ctx, rev); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return 0, fmt.Errorf("compact to revision %d: %w", rev, err)
	}
	return rev, nil
}
