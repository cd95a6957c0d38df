package logline

import (
	"io"
	"sync"
	"sync/atomic"
)

// Output is the single writer behind which every source writes whole lines,
// so that lines of different processes never interleave mid-line. A write
// blocks while the underlying writer blocks: that is the back-pressure that
// reaches a child through its pipe instead of a line being dropped.
type Output struct {
	mu     sync.Mutex
	w      io.Writer
	errors atomic.Uint64
}

// NewOutput wraps w (usually os.Stdout).
func NewOutput(w io.Writer) *Output { return &Output{w: w} }

// Write writes p, which must hold whole lines, in one piece with respect to
// every other writer of this Output.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	n, err := o.w.Write(p)
	o.mu.Unlock()
	if err != nil {
		o.errors.Add(1)
	}
	return n, err
}

// Errors counts the writes that failed (for example a closed stdout).
func (o *Output) Errors() uint64 { return o.errors.Load() }
