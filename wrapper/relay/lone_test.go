package relay

import (
	"bytes"
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/logline"
)

// seen is an output that tells when a line with mark has been written.
type seen struct {
	mark []byte
	once sync.Once
	at   chan struct{}
}

func (s *seen) Write(p []byte) (int, error) {
	if bytes.Contains(p, s.mark) {
		s.once.Do(func() { close(s.at) })
	}
	return len(p), nil
}

// endless is a child that never stops writing lines until ctx ends.
type endless struct {
	ctx   context.Context
	chunk []byte
}

func (e endless) Read(p []byte) (int, error) {
	if e.ctx.Err() != nil {
		return 0, os.ErrClosed
	}
	return copy(p, e.chunk), nil
}

// A line written alone goes out at once: the relay does not wait for a
// second line, a full buffer or the pipe's end, even while another
// process beside it writes as fast as it can to the same output.
func TestLoneLineGoesOutAtOnce(t *testing.T) {
	out := &seen{mark: []byte("lone-line-7f3a"), at: make(chan struct{})}
	o := logline.NewOutput(out)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	heavy := &Source{Format: Logfmt, Line: logline.NewLineFormat("noisy", "stdout", nil), Level: logline.Info, Out: o}
	wg.Add(1)
	go func() {
		defer wg.Done()
		heavy.Run(endless{ctx, bytes.Repeat([]byte("a noisy line of the heavy writer beside it\n"), 1500)})
	}()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	quiet := &Source{Format: Logfmt, Line: logline.NewLineFormat("quiet", "stdout", nil), Level: logline.Info, Out: o}
	wg.Add(1)
	go func() {
		defer wg.Done()
		quiet.Run(r)
	}()
	defer r.Close()
	if _, err := w.Write([]byte("lone-line-7f3a\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-out.at:
	case <-time.After(time.Second):
		t.Fatal("a line written alone was not relayed within 1 s")
	}
}
