package relay

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

func pipeSize(t *testing.T, w *os.File) int {
	t.Helper()
	n, err := logline.PipeSize(int(w.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A pipe that a read finds full is grown to ChildPipeSize, at most
// maxGrownPipes at once; a quiet one keeps the default; the slot of a grown
// pipe is free again at its end. Every line still comes out.
func TestFullPipesAreGrown(t *testing.T) {
	p := poller(t)
	var out bytes.Buffer
	o := logline.NewOutput(&out)
	var ends ended
	full := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmn\n"), defaultPipeSize/98)
	full = append(full, bytes.Repeat([]byte("x"), defaultPipeSize-len(full)-1)...)
	full = append(full, '\n') // exactly the pipe's default capacity
	relay := func(name string, data []byte) *os.File {
		t.Helper()
		fd, w, err := Pipe()
		if err != nil {
			t.Fatal(err)
		}
		if pipeSize(t, w) != defaultPipeSize {
			t.Skipf("a new pipe holds %d bytes here, not %d", pipeSize(t, w), defaultPipeSize)
		}
		if _, err := w.Write(data); err != nil { // before the relay reads: its first read finds it all
			t.Fatal(err)
		}
		src := &Source{Format: Logfmt, Line: logline.NewLineFormat(name, "stdout", nil), Out: o, Now: fixedNow}
		if _, err := p.Relay(src, fd, ends.add()); err != nil {
			t.Fatal(err)
		}
		return w
	}
	quiet := relay("quiet", []byte("one line\n"))
	var loud []*os.File
	for i := 0; i < maxGrownPipes+2; i++ {
		loud = append(loud, relay(fmt.Sprint("loud", i), full))
	}
	grown := func(ws []*os.File) int {
		n := 0
		for _, w := range ws {
			if pipeSize(t, w) == ChildPipeSize {
				n++
			}
		}
		return n
	}
	waitfor.Condition(t, 10*time.Second, "the full pipes read and grown", func() bool {
		return p.grown.Load() == maxGrownPipes && grown(loud) == maxGrownPipes
	})
	if n := pipeSize(t, quiet); n != defaultPipeSize {
		t.Errorf("a quiet pipe was changed to %d bytes", n)
	}
	// the end of a grown pipe frees its slot
	var closed int
	for i, w := range loud {
		if pipeSize(t, w) == ChildPipeSize {
			w.Close()
			loud[i], closed = nil, i
			break
		}
	}
	waitfor.Condition(t, 10*time.Second, "the slot of the closed pipe free", func() bool {
		return p.grown.Load() == maxGrownPipes-1
	})
	var rest []*os.File
	for i, w := range loud {
		if i != closed && pipeSize(t, w) != ChildPipeSize {
			rest = append(rest, w)
		}
	}
	if _, err := rest[0].Write(full); err != nil {
		t.Fatal(err)
	}
	waitfor.Condition(t, 10*time.Second, "a pipe found full again grown in the free slot", func() bool {
		return p.grown.Load() == maxGrownPipes && pipeSize(t, rest[0]) == ChildPipeSize
	})
	quiet.Close()
	for _, w := range loud {
		if w != nil {
			w.Close()
		}
	}
	ends.wait(t, 10*time.Second)
	if n := p.grown.Load(); n != 0 {
		t.Errorf("%d pipes counted as grown after every stream ended", n)
	}
	lines := bytes.Count(out.Bytes(), []byte("\n"))
	if want := 1 + (maxGrownPipes+3)*bytes.Count(full, []byte("\n")); lines != want {
		t.Errorf("%d lines out, want %d", lines, want)
	}
}
