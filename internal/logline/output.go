package logline

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Output is the single writer behind which every source writes whole lines,
// so that lines of different processes never interleave mid-line. A write
// blocks while the underlying writer blocks: that is the back-pressure that
// reaches a child through its pipe instead of a line being dropped.
type Output struct {
	mu      sync.Mutex
	w       io.Writer
	errors  atomic.Uint64
	written atomic.Uint64 // writes completed: how WaitIdle sees the output move
}

// NewOutput wraps w (usually os.Stdout).
func NewOutput(w io.Writer) *Output { return &Output{w: w} }

// Write writes p, which must hold whole lines, in one piece with respect to
// every other writer of this Output.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	n, err := o.w.Write(p)
	o.mu.Unlock()
	o.written.Add(1)
	if err != nil {
		o.errors.Add(1)
	}
	return n, err
}

// WaitIdle waits until done is closed, or until no write has completed for
// idle: the writers that done waits for are then stuck on an output that
// does not move (a pipe nobody reads), and the caller goes on without them.
// It reports whether done was closed.
func (o *Output) WaitIdle(done <-chan struct{}, idle time.Duration) bool {
	tick := time.NewTicker(min(idle, 50*time.Millisecond))
	defer tick.Stop()
	last, since := o.written.Load(), time.Now()
	for {
		select {
		case <-done:
			return true
		case now := <-tick.C:
			if n := o.written.Load(); n != last {
				last, since = n, now
			} else if now.Sub(since) >= idle {
				return false
			}
		}
	}
}

// Errors counts the writes that failed (for example a closed stdout).
func (o *Output) Errors() uint64 { return o.errors.Load() }
