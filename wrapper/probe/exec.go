package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
	"github.com/process-wrapper/process-wrapper/wrapper/reaper"
)

type execCheck struct {
	argv []string
	t    *Target
}

func newExec(p *config.Probe, t *Target) (Checker, error) {
	if t.Reaper == nil {
		return nil, errors.New("exec probe: no reaper")
	}
	return &execCheck{argv: p.Exec.Command, t: t}, nil
}

const outputLimit = 4 << 10

// Check runs the command in its own process group with the process's
// environment; exit 0 is healthy. Its output (stdout and stderr, the first
// 4 KiB) goes into the reason. At the timeout its whole group is killed.
func (c *execCheck) Check(ctx context.Context) error {
	env := c.t.Environ()
	path, err := config.LookPath(c.argv[0], config.LookupEnv(env, "PATH"), "")
	if err != nil {
		return err
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devNull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	pid, exited, err := c.t.Reaper.Start(path, c.argv, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{devNull.Fd(), w.Fd(), w.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	w.Close()
	if err != nil {
		return err
	}
	out := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(r, outputLimit))
		_, _ = io.Copy(io.Discard, r) // keep draining so the command never blocks on a full pipe
		out <- b
	}()
	var e reaper.Exit
	select {
	case e = <-exited:
	case <-ctx.Done():
		_ = c.t.Reaper.Signal(pid, syscall.SIGKILL, true)
		e = <-exited
		// a grandchild in another group could hold the pipe: stop reading
		_ = r.SetReadDeadline(aLongTimeAgo)
		<-out
		return fmt.Errorf("%s: %w", strings.Join(c.argv, " "), ctx.Err())
	}
	_ = r.SetReadDeadline(drainDeadline())
	b := <-out
	if e.Code() != 0 {
		return fmt.Errorf("%s: %s: %s", strings.Join(c.argv, " "), e, excerpt(b))
	}
	return nil
}
