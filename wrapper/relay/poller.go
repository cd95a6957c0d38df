package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/process-wrapper/process-wrapper/internal/logline"
)

// Poller waits on the pipes of every process at once: one epoll set, waited
// on by one goroutine through Go's own poller, which also relays the pipes
// that have data (see Run). A pipe found empty gives its buffers back: an
// idle stream costs its Stream and nothing else, not a parked goroutine's
// stack. With a thousand quiet children that is 8 KiB less per child.
type Poller struct {
	ep  int // the epoll set
	epf *os.File

	mu      sync.Mutex
	streams map[int32]*Stream // by read end

	grown atomic.Int32 // pipes grown to ChildPipeSize and not yet closed
}

// A child's pipe starts at Linux's default capacity, 64 KiB. One that a
// read finds full (its child writes faster than the relay's turns come) is
// grown to ChildPipeSize: the child then blocks less often and each of the
// relay's wake-ups moves more (3M lines from cat: 6 % less of the wrapper's
// CPU, and a third less wall time in LOG_FORMAT=free). At most
// maxGrownPipes are at once: the kernel counts each pipe's capacity
// against its user's pipe-user-pages-soft (16384 pages by default, for
// every process of the uid together, root in a container without
// CAP_SYS_RESOURCE included), and a user past it gets pipes of two pages.
// A grown pipe takes no memory while it is empty.
const (
	ChildPipeSize   = 256 << 10
	maxGrownPipes   = 8
	defaultPipeSize = 64 << 10
)

// NewPoller makes the epoll set. Run waits on it.
func NewPoller() (*Poller, error) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := syscall.SetNonblock(ep, true); err != nil {
		syscall.Close(ep)
		return nil, os.NewSyscallError("fcntl", err)
	}
	// non-blocking: os waits for it in its own poller, not in a thread
	return &Poller{ep: ep, epf: os.NewFile(uintptr(ep), "epoll"), streams: map[int32]*Stream{}}, nil
}

// Run relays every pipe that has data, until ctx ends. One goroutine does
// it all, in turns: each pipe with data gets one read (up to readSize) and
// one write of its lines, then the next one does, so that a quiet
// process's line waits for at most one write of each busy one, and a pipe
// found empty goes back to the epoll set. All the pipes share one output,
// which is what limits the relay under load; one goroutine feeding it
// costs no thread wake-ups where several would take turns at its lock.
func (p *Poller) Run(ctx context.Context) error {
	raw, err := p.epf.SyscallConn()
	if err != nil {
		return fmt.Errorf("relay poller: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { p.epf.Close() })
	defer stop()
	events := make([]syscall.EpollEvent, 64)
	var hot []*Stream // pipes that had data at their last turn
	var polled time.Time
	for ctx.Err() == nil {
		var n int
		var werr error
		switch {
		case len(hot) == 0:
			err := raw.Read(func(fd uintptr) bool {
				n, werr = syscall.EpollWait(int(fd), events, 0)
				return werr != syscall.EINTR && (n > 0 || werr != nil)
			})
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("relay poller: %w", err)
			}
			polled = time.Now()
		case time.Since(polled) >= pollEvery:
			if n, werr = syscall.EpollWait(p.ep, events, 0); werr == syscall.EINTR {
				n, werr = 0, nil
			}
			polled = time.Now()
		default:
			// busy: more turns before asking the epoll set again
		}
		if werr != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay poller: %w", os.NewSyscallError("epoll_wait", werr))
		}
		p.mu.Lock()
		for _, ev := range events[:n] {
			if st := p.streams[ev.Fd]; st != nil && st.claim() {
				hot = append(hot, st)
			}
		}
		p.mu.Unlock()
		kept := hot[:0]
		for _, st := range hot {
			if st.turn() {
				kept = append(kept, st)
			}
		}
		clear(hot[len(kept):])
		hot = kept
	}
	return nil
}

// Pipe makes a pipe for a child's stdout or stderr: the write end for the
// child (blocking, as a child expects), the read end for Relay (not
// blocking, and not in Go's poller: the Poller waits on it).
func Pipe() (r int, w *os.File, err error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return -1, nil, os.NewSyscallError("pipe2", err)
	}
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return -1, nil, os.NewSyscallError("fcntl", err)
	}
	return fds[0], os.NewFile(uintptr(fds[1]), "pipe"), nil
}

// Stream is one pipe being relayed.
type Stream struct {
	p   *Poller
	src *Source
	fd  int
	end func(st *Stream, lines int, err error) // called once, when the stream has ended

	// owned by whoever has set busy: the poller's turns, or the
	// deadline's timer for an idle stream
	in    *input
	clock logline.Clock
	lines int
	err   error
	grown bool // its pipe counts in the poller's grown
	fixed bool // its pipe is not to be grown: the kernel refused
	// past the deadline: held is what the pipe still holds of what it held
	// at the deadline, which is relayed before the stream ends (see turn)
	draining bool
	held     int

	mu       sync.Mutex
	busy     bool // being relayed (or ended) by its owner
	ended    bool
	deadline time.Time
	timer    *time.Timer
}

// Relay relays the pipe read end fd (from Pipe; the Stream owns it and
// closes it) until its end, and then calls end with the lines written and
// the error that ended it (nil at the pipe's end). On an error fd is left
// to the caller.
func (p *Poller) Relay(src *Source, fd int, end func(st *Stream, lines int, err error)) (*Stream, error) {
	st := &Stream{p: p, src: src, fd: fd, end: end, in: &input{limit: src.limit()}}
	p.mu.Lock()
	p.streams[int32(fd)] = st
	p.mu.Unlock()
	if err := p.arm(fd, syscall.EPOLL_CTL_ADD); err != nil {
		p.mu.Lock()
		delete(p.streams, int32(fd))
		p.mu.Unlock()
		return nil, err
	}
	return st, nil
}

// pollEvery is how often, while pipes are busy, the poller looks for pipes
// that have just got data: a quiet process's line waits at most that long
// (and one write of each busy pipe) to be read.
const pollEvery = time.Millisecond

const epollOneShot = 1 << 30 // EPOLLONESHOT, which syscall spells as a negative int

// arm asks for one event when fd has data (or its writers are gone).
func (p *Poller) arm(fd, op int) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | epollOneShot, Fd: int32(fd)}
	if err := syscall.EpollCtl(p.ep, op, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// claim takes the stream for the poller's turns, unless it has ended or is
// being ended.
func (st *Stream) claim() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.busy || st.ended {
		return false
	}
	st.busy = true
	return true
}

// turn reads the pipe once and relays what it brought. It reports whether
// the stream wants another turn: false once the pipe was found empty (the
// buffers are given back and the pipe armed in the epoll set again), or the
// stream ended (its end, or its deadline).
func (st *Stream) turn() bool {
	st.mu.Lock()
	late := st.late()
	st.mu.Unlock()
	if late && !st.draining {
		// what the pipe holds now was written before the deadline (by a
		// process that has exited, often): it is relayed however long
		// that takes; what comes after it is not waited for
		st.draining, st.held = true, pending(st.fd)
	}
	// once that is read, one more read tells the pipe's end (EOF) from a
	// writer still holding it, whose later bytes are not waited for
	last := st.draining && st.held <= 0
	in := st.in
	in.take()
	buf := in.buf[in.end:]
	if st.draining && !last && len(buf) > st.held {
		buf = buf[:st.held]
	}
	n, err := read(st.fd, buf)
	switch {
	case err == syscall.EINTR:
		return true
	case err == syscall.EAGAIN:
		// empty: give the buffers back, and wait in the epoll set
		in.idle()
		st.mu.Lock()
		if st.late() {
			st.mu.Unlock()
			st.finish(os.ErrDeadlineExceeded)
			return false
		}
		if err := st.p.arm(st.fd, syscall.EPOLL_CTL_MOD); err != nil {
			st.mu.Unlock()
			st.finish(err)
			return false
		}
		st.busy = false
		st.mu.Unlock()
		return false
	}
	var rerr error
	switch {
	case err != nil:
		rerr = os.NewSyscallError("read", err)
	case n == 0:
		rerr = io.EOF
	default:
		in.end += n
		if st.draining {
			st.held -= n
		}
		if n >= defaultPipeSize && !st.grown && !st.fixed {
			st.grow()
		}
	}
	st.step(rerr)
	if rerr != nil {
		st.finish(rerr)
		return false
	}
	if last {
		st.finish(os.ErrDeadlineExceeded)
		return false
	}
	return true
}

// grow grows the stream's pipe to ChildPipeSize while fewer than
// maxGrownPipes are grown; a stream the kernel refuses is not tried again.
func (st *Stream) grow() {
	if st.p.grown.Add(1) > maxGrownPipes {
		st.p.grown.Add(-1)
		return
	}
	if err := logline.GrowPipe(st.fd, ChildPipeSize); err != nil {
		st.p.grown.Add(-1)
		st.fixed = true
		return
	}
	st.grown = true
}

// pending is how many bytes wait in the pipe read end fd (0 when the kernel
// does not say).
func pending(fd int) int {
	var n int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return 0
	}
	return int(n)
}

// late reports whether the deadline has passed (st.mu held).
func (st *Stream) late() bool {
	return !st.deadline.IsZero() && !time.Now().Before(st.deadline)
}

// step relays what the stream's buffer holds, keeping the first error.
func (st *Stream) step(rerr error) {
	k, werr := st.src.step(st.in, &st.clock, rerr)
	st.lines += k
	if st.err == nil {
		st.err = werr
	}
}

// Expire ends the stream at at, as a read deadline would: what the pipe
// holds until then is still relayed.
func (st *Stream) Expire(at time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return
	}
	st.deadline = at
	if st.timer != nil {
		st.timer.Stop()
	}
	st.timer = time.AfterFunc(time.Until(at), func() {
		st.mu.Lock()
		// an idle stream whose pipe holds bytes is the poller's: their
		// event is on its way, and its turn relays them first
		idle := !st.busy && !st.ended && pending(st.fd) == 0
		if idle {
			st.busy = true // ours now: the poller leaves it alone
		}
		st.mu.Unlock()
		if idle {
			st.finish(os.ErrDeadlineExceeded)
		}
	})
}

// finish ends the stream from the goroutine that owns it (busy is set: the
// poller's, or the deadline's timer for an idle stream):
// the unfinished line goes out as the last one, the pipe leaves the epoll
// set and is closed, and end is called.
func (st *Stream) finish(why error) {
	in := st.in
	if in.buf == nil && len(in.carry) > 0 {
		in.take()
	}
	if in.buf != nil && in.end > in.start {
		st.step(why)
	}
	in.putBack()
	in.buf = nil
	st.mu.Lock()
	st.ended = true
	if st.timer != nil {
		st.timer.Stop()
	}
	st.mu.Unlock()
	st.p.mu.Lock()
	delete(st.p.streams, int32(st.fd))
	syscall.EpollCtl(st.p.ep, syscall.EPOLL_CTL_DEL, st.fd, nil)
	syscall.Close(st.fd)
	st.p.mu.Unlock()
	if st.grown {
		st.p.grown.Add(-1)
	}
	err := st.err
	if !errors.Is(why, io.EOF) {
		err = errors.Join(err, why)
	}
	st.end(st, st.lines, err)
}

// read reads the non-blocking pipe fd. It returns at once, so it is made
// without telling the scheduler (see logline's pipeWriter).
func read(fd int, b []byte) (int, error) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
