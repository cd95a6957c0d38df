package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/internal/syncbuf"
	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// unread is how many bytes wait in the pipe read end fd (FIONREAD): 0 once
// the relay has read what was written.
func unread(t *testing.T, fd int) int {
	return pending(fd)
}

// keepWriting writes data to w again and again until the returned stop is
// called (or w is closed), and waits for the writer's end in stop.
func keepWriting(w *os.File, data []byte) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			default:
			}
			if _, err := w.Write(data); err != nil {
				return // the read end is closed
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// ended collects the ends of streams.
type ended struct {
	mu   sync.Mutex
	errs map[*Stream]error
	wg   sync.WaitGroup
}

func (e *ended) add() func(*Stream, int, error) {
	e.wg.Add(1)
	return func(st *Stream, _ int, err error) {
		e.mu.Lock()
		if e.errs == nil {
			e.errs = map[*Stream]error{}
		}
		e.errs[st] = err
		e.mu.Unlock()
		e.wg.Done()
	}
}

// wait waits until every stream has ended, for at most timeout.
func (e *ended) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("the streams did not end within %v", timeout)
	}
}

// poller starts a Poller for the test.
func poller(t *testing.T) *Poller {
	p, err := NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return p
}

// Idle pipes cost neither a goroutine nor a buffer, even with an
// unfinished line read and waiting for its end; the line then comes out
// whole.
func TestIdleStreamsHoldNothing(t *testing.T) {
	const streams = 500
	p := poller(t)
	var out syncbuf.Buffer
	o := logline.NewOutput(&out)
	var ends ended
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	var fds []int
	var ws []*os.File
	for i := 0; i < streams; i++ {
		fd, w, err := Pipe()
		if err != nil {
			t.Fatal(err)
		}
		src := &Source{Format: Logfmt, Line: logline.NewLineFormat(fmt.Sprint("p", i), "stdout", nil), Out: o, Now: fixedNow}
		if _, err := p.Relay(src, fd, ends.add()); err != nil {
			t.Fatal(err)
		}
		fds, ws = append(fds, fd), append(ws, w)
		fmt.Fprintf(w, "first line of %d\nunfinished line of %d", i, i)
	}
	defer func() {
		for _, w := range ws {
			w.Close()
		}
	}()
	waitfor.Condition(t, 10*time.Second, "every pipe read", func() bool {
		for _, fd := range fds {
			if unread(t, fd) > 0 {
				return false
			}
		}
		return true
	})
	// each stream's goroutine gives its buffers back and ends once its
	// next read finds the pipe empty, which follows the read seen above
	var per int64
	var extra int
	if !waitfor.Poll(10*time.Second, func() bool {
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		per = (int64(after.HeapInuse) - int64(before.HeapInuse)) / streams
		extra = runtime.NumGoroutine() - goroutines
		return per <= 4<<10 && extra <= 0
	}) {
		t.Errorf("%d B of heap and %d goroutines for %d idle streams: they hold buffers or goroutines while their pipes are empty", per, extra, streams)
	}
	t.Logf("heap in use per idle stream: %d B", per)
	for _, w := range ws {
		fmt.Fprintf(w, " ends here\n")
		w.Close()
	}
	ws = nil
	ends.wait(t, 10*time.Second)
	got := out.String()
	for i := 0; i < streams; i++ {
		for _, want := range []string{fmt.Sprintf(`app=p%d stream=stdout msg="first line of %d"`, i, i), fmt.Sprintf(`app=p%d stream=stdout msg="unfinished line of %d ends here"`, i, i)} {
			if !strings.Contains(got, want+"\n") {
				t.Fatalf("no line %q in the output", want)
			}
		}
	}
	for st, err := range ends.errs {
		if err != nil {
			t.Fatalf("stream %p ended with %v, want its end", st, err)
		}
	}
}

// A long line written slowly, in pieces that each find the pipe empty,
// comes out whole.
func TestLongLineWrittenSlowly(t *testing.T) {
	p := poller(t)
	var out syncbuf.Buffer
	fd, w, err := Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var ends ended
	src := &Source{Format: Logfmt, Line: logline.NewLineFormat("slow", "stdout", nil), Out: logline.NewOutput(&out), Now: fixedNow}
	if _, err := p.Relay(src, fd, ends.add()); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := 0; i < 40; i++ { // 40 x 500 B: past the size kept aside
		piece := strings.Repeat(string(rune('a'+i%26)), 500)
		want.WriteString(piece)
		w.WriteString(piece)
		waitfor.Condition(t, 5*time.Second, "the piece read", func() bool { return unread(t, fd) == 0 })
	}
	w.WriteString("\n")
	w.Close()
	ends.wait(t, 10*time.Second)
	if got := out.String(); !strings.Contains(got, `msg="`+want.String()+`"`) || strings.Count(got, "\n") != 1 {
		t.Fatalf("got %d bytes in %d lines, want one line of %d", len(got), strings.Count(got, "\n"), want.Len())
	}
}

// A pipe that stays open (a grandchild holds it) ends at its deadline,
// idle or busy, with what it held relayed and its unfinished line last.
func TestStreamExpires(t *testing.T) {
	p := poller(t)
	var out syncbuf.Buffer
	o := logline.NewOutput(&out)
	var ends ended
	idleFd, idleW, _ := Pipe()
	busyFd, busyW, _ := Pipe()
	defer idleW.Close()
	defer busyW.Close()
	idle, _ := p.Relay(&Source{Format: Logfmt, Line: logline.NewLineFormat("idle", "stdout", nil), Out: o, Now: fixedNow}, idleFd, ends.add())
	busy, _ := p.Relay(&Source{Format: Logfmt, Line: logline.NewLineFormat("busy", "stdout", nil), Out: o, Now: fixedNow}, busyFd, ends.add())
	idleW.WriteString("said\nhalf a line")
	stopWriting := keepWriting(busyW, []byte("again and again\n"))
	waitfor.Condition(t, 5*time.Second, "the idle pipe read", func() bool { return unread(t, idleFd) == 0 })
	at := time.Now().Add(100 * time.Millisecond)
	idle.Expire(at)
	busy.Expire(at)
	ends.wait(t, 10*time.Second)
	busyW.Close()
	stopWriting()
	if !time.Now().After(at) {
		t.Fatal("the streams ended before their deadline")
	}
	for st, err := range ends.errs {
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("stream %p ended with %v, want the deadline", st, err)
		}
	}
	got := out.String()
	if !strings.Contains(got, `app=idle stream=stdout msg="said"`) || !strings.Contains(got, `app=idle stream=stdout msg="half a line"`) || !strings.Contains(got, `app=busy stream=stdout msg="again and again"`) {
		t.Fatalf("output: %.400q", got)
	}
}

// A line written alone goes out at once while another pipe of the same
// poller, on the same output, never stops.
func TestPollerLoneLine(t *testing.T) {
	p := poller(t)
	out := &seen{mark: []byte("lone-line-7f3a"), at: make(chan struct{})}
	o := logline.NewOutput(out)
	var ends ended
	heavyFd, heavyW, _ := Pipe()
	quietFd, quietW, _ := Pipe()
	p.Relay(&Source{Format: Logfmt, Line: logline.NewLineFormat("noisy", "stdout", nil), Out: o}, heavyFd, ends.add())
	p.Relay(&Source{Format: Logfmt, Line: logline.NewLineFormat("quiet", "stdout", nil), Out: o}, quietFd, ends.add())
	stopWriting := keepWriting(heavyW, bytes.Repeat([]byte("a noisy line of the heavy writer beside it\n"), 1500))
	defer func() {
		stopWriting()
		heavyW.Close()
		quietW.Close()
		ends.wait(t, 10*time.Second)
	}()
	if _, err := quietW.Write([]byte("lone-line-7f3a\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-out.at:
	case <-time.After(time.Second):
		t.Fatal("a line written alone was not relayed within 1 s")
	}
}

// gated is a stdout that takes nothing until open is closed: the relay
// then falls behind its pipe, as a slow machine makes it.
type gated struct {
	open chan struct{}
	out  syncbuf.Buffer
}

func (g *gated) Write(p []byte) (int, error) {
	<-g.open
	return g.out.Write(p)
}

// What a pipe holds when its deadline passes is relayed, however long that
// takes: the deadline bounds the wait for a writer that keeps the pipe
// open, not the reading of what its processes wrote before they exited.
// (With the pipe grown, a process's last 256 KiB can wait in it when the
// wrapper drains.)
func TestExpiredStreamRelaysWhatThePipeHeld(t *testing.T) {
	for _, open := range []bool{false, true} {
		t.Run(fmt.Sprintf("writer still open %v", open), func(t *testing.T) {
			p := poller(t)
			g := &gated{open: make(chan struct{})}
			fd, w, err := Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if err := logline.GrowPipe(fd, ChildPipeSize); err != nil {
				t.Skipf("cannot grow a pipe here: %v", err)
			}
			var ends ended
			st, err := p.Relay(&Source{Format: Logfmt, Line: logline.NewLineFormat("held", "stdout", nil), Out: logline.NewOutput(g), Now: fixedNow}, fd, ends.add())
			if err != nil {
				t.Fatal(err)
			}
			// the first line holds the relay in its write; the others
			// wait in the pipe
			fmt.Fprintf(w, "line 0\n")
			waitfor.Condition(t, 5*time.Second, "the first line read", func() bool { return unread(t, fd) == 0 })
			const lines = 2000
			var batch strings.Builder
			for i := 1; i < lines; i++ {
				fmt.Fprintf(&batch, "line %d %s\n", i, strings.Repeat("x", 90))
			}
			if _, err := w.WriteString(batch.String()); err != nil {
				t.Fatal(err)
			}
			if !open {
				w.Close()
			}
			st.Expire(time.Now().Add(-time.Second))
			close(g.open)
			ends.wait(t, 10*time.Second)
			got := g.out.String()
			if n := strings.Count(got, "\n"); n != lines {
				t.Fatalf("%d lines relayed of the %d written before the deadline; the last: %.200q", n, lines, got[strings.LastIndexByte(got[:len(got)-1], '\n')+1:])
			}
			for st, err := range ends.errs {
				if open != errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("stream %p ended with %v", st, err)
				}
			}
		})
	}
}
