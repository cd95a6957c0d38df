package logline

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func nonblocking(t *testing.T, f *os.File) bool {
	t.Helper()
	raw, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var flags int
	raw.Control(func(fd uintptr) {
		r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
		if errno != 0 {
			t.Fatal(errno)
		}
		flags = int(r)
	})
	return flags&syscall.O_NONBLOCK != 0
}

// A pipe is written through an open file of the wrapper's own, which does
// not block; the inherited one keeps its flags. A regular file is kept.
func TestPollable(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w.Fd() // as an inherited stdout is: blocking
	pw, ok := Pollable(w).(*pipeWriter)
	if !ok {
		t.Fatal("a pipe was not opened again")
	}
	if !nonblocking(t, pw.f) || nonblocking(t, w) {
		t.Fatalf("flags: own file non-blocking %v, inherited one non-blocking %v", nonblocking(t, pw.f), nonblocking(t, w))
	}
	// more than the pipe holds: the writer waits for the reader
	big := bytes.Repeat([]byte("through the pipe\n"), 20000)
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		got <- b
	}()
	if n, err := pw.Write(big); err != nil || n != len(big) {
		t.Fatalf("wrote %d of %d: %v", n, len(big), err)
	}
	pw.f.Close()
	w.Close()
	if b := <-got; !bytes.Equal(b, big) {
		t.Fatalf("read %d bytes, want %d", len(b), len(big))
	}

	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if Pollable(f) != io.Writer(f) {
		t.Fatal("a regular file was opened again")
	}
}

func pipeSize(t *testing.T, f *os.File) int {
	t.Helper()
	n, err := PipeSize(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The stdout pipe is grown to OutputPipeSize; one already larger is kept.
func TestPollableGrowsThePipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if n := pipeSize(t, w); n >= OutputPipeSize {
		t.Fatalf("a new pipe holds %d bytes already: nothing to test", n)
	}
	Pollable(w)
	if n := pipeSize(t, w); n != OutputPipeSize {
		t.Fatalf("the pipe holds %d bytes, want %d", n, OutputPipeSize)
	}

	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	defer w2.Close()
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, w2.Fd(), fSetPipeSize, 4*OutputPipeSize); errno != 0 {
		t.Skipf("cannot grow a pipe here: %v", errno)
	}
	Pollable(w2)
	if n := pipeSize(t, w2); n != 4*OutputPipeSize {
		t.Fatalf("a pipe of %d bytes was changed to %d", 4*OutputPipeSize, n)
	}
}
