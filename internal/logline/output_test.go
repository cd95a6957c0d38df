package logline

import (
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
	p := Pollable(w)
	if p == w {
		t.Fatal("a pipe was not opened again")
	}
	if !nonblocking(t, p) || nonblocking(t, w) {
		t.Fatalf("flags: own file non-blocking %v, inherited one non-blocking %v", nonblocking(t, p), nonblocking(t, w))
	}
	if _, err := p.Write([]byte("through the pipe\n")); err != nil {
		t.Fatal(err)
	}
	p.Close()
	w.Close()
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "through the pipe\n" {
		t.Fatalf("read %q, %v", got, err)
	}

	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if Pollable(f) != f {
		t.Fatal("a regular file was opened again")
	}
}
