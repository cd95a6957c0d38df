package logline

import (
	"sync"
	"sync/atomic"
	"time"
)

// QueueLimit is how many of a logger's own lines wait for a blocked
// output before some are dropped.
const QueueLimit = 1024

// queueHead is how many of the oldest waiting lines are never dropped: the
// first lines of a stall say what happened as it began, the newest what
// happens now; what goes is in between.
const queueHead = 16

// queue holds a Logger's lines between the code that logs (which must never
// wait for stdout: the supervisor logs on its own control paths) and the
// one goroutine that writes them to the Output.
type queue struct {
	mu      sync.Mutex
	lines   []queued
	dropped uint64 // since the last report
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	total   atomic.Uint64
}

type queued struct {
	b    []byte
	keep bool // never dropped ("shutting down", "exiting")
}

// push adds a line, dropping one from the middle when the queue is full.
func (q *queue) push(b []byte, keep bool) {
	q.mu.Lock()
	if len(q.lines) >= QueueLimit {
		for i := queueHead; i < len(q.lines); i++ {
			if !q.lines[i].keep {
				q.lines = append(q.lines[:i], q.lines[i+1:]...)
				q.dropped++
				q.total.Add(1)
				break
			}
		}
	}
	q.lines = append(q.lines, queued{b: b, keep: keep})
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns every waiting line and how many were dropped since the last
// take.
func (q *queue) take() ([]queued, uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	lines, dropped := q.lines, q.dropped
	q.lines, q.dropped = nil, 0
	return lines, dropped
}

// Async makes l's lines go through a bounded queue written by a goroutine
// of its own, so that logging never waits for a blocked output. Close
// writes what is left and ends the goroutine.
func (l *Logger) Async() {
	q := &queue{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	l.q.Store(q)
	go l.writeQueue(q)
}

func (l *Logger) writeQueue(q *queue) {
	defer close(q.done)
	var buf []byte
	for {
		stopping := false
		select {
		case <-q.wake:
		case <-q.stop:
			stopping = true
		}
		for {
			lines, dropped := q.take()
			if len(lines) == 0 && dropped == 0 {
				break
			}
			buf = buf[:0]
			for _, ln := range lines {
				buf = append(buf, ln.b...)
			}
			_, _ = l.out.Write(buf)
			if dropped > 0 {
				// the output moved again: say what it cost
				_, _ = l.out.Write(l.line(Warn, "dropped the wrapper's own log lines while its output was blocked", []any{"dropped", dropped}))
			}
		}
		if stopping {
			return
		}
	}
}

// Dropped counts the lines dropped while the output was blocked.
func (l *Logger) Dropped() uint64 {
	if q := l.q.Load(); q != nil {
		return q.total.Load()
	}
	return 0
}

// Close writes the lines still waiting and stops the writer, giving up
// when the output has not moved for idle: an output that never moves
// again must not keep the program from exiting.
func (l *Logger) Close(idle time.Duration) {
	q := l.q.Load()
	if q == nil {
		return
	}
	close(q.stop)
	l.out.WaitIdle(q.done, idle)
}
