// Package tail keeps the last lines a process wrote, as they went out on
// the wrapper's stdout, and hands the new ones to followers: what `ctl
// logs` shows. A process that has written nothing costs nothing; one that
// has keeps at most Size bytes. The relay gives each write here after
// writing it to stdout; a follower too slow for a process's output loses
// lines (counted, and said in its stream), never the wrapper's stdout.
package tail

import (
	"bytes"
	"sync"
)

// Size is how many bytes of a process's last lines are kept.
const Size = 8 << 10

// followerQueue is how many writes wait for one follower.
const followerQueue = 256

// Tail is one process's last lines and its followers.
type Tail struct {
	mu        sync.Mutex
	buf       []byte // whole lines, the oldest first; nil until the first write
	followers map[*Follower]struct{}
}

// Follower receives every write after Follow.
type Follower struct {
	t       *Tail
	C       chan []byte // each write, copied
	mu      sync.Mutex
	dropped int // writes lost since the last Dropped
}

// Write keeps the end of p (whole lines of the wrapper's output) and hands
// p to the followers. It never blocks.
func (t *Tail) Write(p []byte) {
	if len(p) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.keep(p)
	if len(t.followers) == 0 {
		return
	}
	c := bytes.Clone(p)
	for f := range t.followers {
		select {
		case f.C <- c:
		default:
			f.mu.Lock()
			f.dropped++
			f.mu.Unlock()
		}
	}
}

// keep appends p's end to the buffer and drops the oldest lines past Size.
func (t *Tail) keep(p []byte) {
	if len(p) >= Size {
		p = p[len(p)-Size:]
		if i := bytes.IndexByte(p, '\n'); i >= 0 && i+1 < len(p) {
			p = p[i+1:] // from a line's start
		}
		t.buf = append(t.buf[:0], p...)
		return
	}
	if t.buf == nil {
		t.buf = make([]byte, 0, Size)
	}
	if over := len(t.buf) + len(p) - Size; over > 0 {
		// drop the oldest lines, at least over bytes, to a line's start
		cut := len(t.buf)
		if i := bytes.IndexByte(t.buf[over-1:], '\n'); i >= 0 {
			cut = over + i
		}
		t.buf = t.buf[:copy(t.buf, t.buf[cut:])]
	}
	t.buf = append(t.buf, p...)
}

// Last returns the last n lines kept (fewer when fewer are kept), as one
// block of text.
func (t *Tail) Last(n int) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return last(t.buf, n)
}

func last(buf []byte, n int) []byte {
	if n <= 0 || len(buf) == 0 {
		return nil
	}
	i := len(buf)
	if buf[i-1] == '\n' {
		i-- // the final newline ends the last line
	}
	for ; n > 1; n-- {
		j := bytes.LastIndexByte(buf[:i], '\n')
		if j < 0 {
			return bytes.Clone(buf)
		}
		i = j
	}
	return bytes.Clone(buf[bytes.LastIndexByte(buf[:i], '\n')+1:])
}

// Follow returns the last n lines and a follower of what comes after them,
// taken at one instant. Stop it when done.
func (t *Tail) Follow(n int) ([]byte, *Follower) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := &Follower{t: t, C: make(chan []byte, followerQueue)}
	if t.followers == nil {
		t.followers = map[*Follower]struct{}{}
	}
	t.followers[f] = struct{}{}
	return last(t.buf, n), f
}

// Stop ends the follower: it receives nothing more.
func (f *Follower) Stop() {
	f.t.mu.Lock()
	defer f.t.mu.Unlock()
	delete(f.t.followers, f)
}

// Dropped returns how many writes the follower lost since the last call.
func (f *Follower) Dropped() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.dropped
	f.dropped = 0
	return n
}
