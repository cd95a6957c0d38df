// Package retry spaces the tries of a watcher whose server may be down (the
// GCE metadata server, the Kubernetes API): exponential backoff with
// jitter, so that a fleet of wrappers does not come back in step.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff doubles from Initial up to Max; Reset goes back to Initial.
type Backoff struct {
	Initial, Max time.Duration
	cur          time.Duration
}

// Wait sleeps the next delay, drawn in [d/2, 3d/2) around the current one,
// then doubles it. It returns false when ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool {
	if b.cur == 0 {
		b.cur = b.Initial
	}
	d := b.cur/2 + time.Duration(rand.Int64N(int64(b.cur)))
	b.cur = min(2*b.cur, b.Max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Reset makes the next delay Initial again (the server answered).
func (b *Backoff) Reset() { b.cur = b.Initial }
