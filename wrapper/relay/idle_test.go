package relay

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// unread is how many bytes wait in the pipe of r (FIONREAD): 0 once the
// relay has read what was written.
func unread(t *testing.T, r *os.File) int {
	var n int32
	raw, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var errno syscall.Errno
	raw.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	})
	if errno != 0 {
		t.Fatal(errno)
	}
	return int(n)
}

// lockedBuffer is an output several sources write to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Idle pipes hold no read or write buffer, even with an unfinished line
// read and waiting for its end; the line then comes out whole.
func TestIdleStreamsHoldNoBuffer(t *testing.T) {
	const streams = 500
	var out lockedBuffer
	o := logline.NewOutput(&out)
	var wg sync.WaitGroup
	var ws []*os.File
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var rs []*os.File
	for i := 0; i < streams; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		rs, ws = append(rs, r), append(ws, w)
		src := &Source{Format: Logfmt, Line: logline.NewLineFormat(fmt.Sprint("p", i), "stdout", nil), Out: o, Now: fixedNow}
		wg.Add(1)
		go func() {
			defer wg.Done()
			src.Run(r)
			r.Close()
		}()
		fmt.Fprintf(w, "first line of %d\nunfinished line of %d", i, i)
	}
	defer func() {
		for _, w := range ws {
			w.Close()
		}
		wg.Wait()
	}()
	waitfor.Condition(t, 10*time.Second, "every pipe read", func() bool {
		for _, r := range rs {
			if unread(t, r) > 0 {
				return false
			}
		}
		return true
	})
	// each relay gives its buffers back once its next read finds the pipe
	// empty, which follows the read the condition above saw
	var per int64
	if !waitfor.Poll(10*time.Second, func() bool {
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		per = (int64(after.HeapInuse) - int64(before.HeapInuse)) / streams
		return per <= 8<<10
	}) {
		t.Errorf("%d B of heap per idle stream: its buffers are held while its pipe is empty", per)
	}
	t.Logf("heap in use per idle stream: %d B", per)
	for _, w := range ws {
		fmt.Fprintf(w, " ends here\n")
		w.Close()
	}
	wg.Wait()
	ws = nil
	got := out.b.String()
	for i := 0; i < streams; i++ {
		for _, want := range []string{fmt.Sprintf(`app=p%d stream=stdout msg="first line of %d"`, i, i), fmt.Sprintf(`app=p%d stream=stdout msg="unfinished line of %d ends here"`, i, i)} {
			if !strings.Contains(got, want+"\n") {
				t.Fatalf("no line %q in the output", want)
			}
		}
	}
}

// A long line written slowly, in pieces that each find the pipe empty,
// comes out whole.
func TestLongLineWrittenSlowly(t *testing.T) {
	var out lockedBuffer
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	src := &Source{Format: Logfmt, Line: logline.NewLineFormat("slow", "stdout", nil), Out: logline.NewOutput(&out), Now: fixedNow}
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Run(r)
		r.Close()
	}()
	var want strings.Builder
	for i := 0; i < 40; i++ { // 40 x 500 B: past the size kept aside
		piece := strings.Repeat(string(rune('a'+i%26)), 500)
		want.WriteString(piece)
		w.WriteString(piece)
		waitfor.Condition(t, 5*time.Second, "the piece read", func() bool { return unread(t, r) == 0 })
	}
	w.WriteString("\n")
	w.Close()
	<-done
	if got := out.b.String(); !strings.Contains(got, `msg="`+want.String()+`"`) || strings.Count(got, "\n") != 1 {
		t.Fatalf("got %d bytes in %d lines, want one line of %d", len(got), strings.Count(got, "\n"), want.Len())
	}
}
