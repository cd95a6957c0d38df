package reaper

import (
	"context"
	"io"
	"os"
	"syscall"
	"time"
)

// OutputLimit is how much of a command's output Exec keeps.
const OutputLimit = 4 << 10

// Exec runs a short command (an exec probe, a hook) to its end: in its own
// process group, stdin /dev/null, stdout and stderr together in one pipe of
// which the first OutputLimit bytes are kept. When ctx ends first, the
// whole group is killed and ctx's error returned with what it had written.
func (r *Reaper) Exec(ctx context.Context, path string, argv, env []string) (Exit, []byte, error) {
	devNull, err := OpenDevNull()
	if err != nil {
		return Exit{}, nil, err
	}
	defer syscall.Close(devNull)
	rd, wr, err := os.Pipe()
	if err != nil {
		return Exit{}, nil, err
	}
	defer rd.Close()
	pid, exited, err := r.Start(path, argv, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{uintptr(devNull), wr.Fd(), wr.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	wr.Close()
	if err != nil {
		return Exit{}, nil, err
	}
	out := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(rd, OutputLimit))
		_, _ = io.Copy(io.Discard, rd) // keep draining so the command never blocks on a full pipe
		out <- b
	}()
	var e Exit
	var runErr error
	select {
	case e = <-exited:
	case <-ctx.Done():
		_ = r.Signal(pid, syscall.SIGKILL, true)
		e, runErr = <-exited, ctx.Err()
	}
	// a grandchild in another group could hold the pipe: bound the drain
	_ = rd.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	return e, <-out, runErr
}

// OpenDevNull opens /dev/null for reading, close-on-exec, as a child's
// stdin: one system call where os.Open takes six (it offers the file to
// Go's poller, which refuses it, and puts its flags back), at every start.
func OpenDevNull() (int, error) {
	fd, err := syscall.Open(os.DevNull, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: os.DevNull, Err: err}
	}
	return fd, nil
}
