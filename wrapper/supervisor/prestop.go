package supervisor

import (
	"context"
	"fmt"
	"time"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
	"github.com/process-wrapper/process-wrapper/wrapper/probe"
	"github.com/process-wrapper/process-wrapper/wrapper/reaper"
	"golang.org/x/sys/unix"
)

// preStop runs the process's preStop handler before its stop signal, as
// kubelet runs a container's: its time counts in the grace, its failure is
// logged and the stop goes on. It returns the process's exit when that
// came during the handler (exited: the handler is stopped), or late when
// the deadline came first (the caller then kills the process).
//
//go:noinline
func (r *runner) preStop(pid int, exitCh <-chan reaper.Exit, grace <-chan time.Time) (e reaper.Exit, exited, late bool) {
	h := r.p.PreStop
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	began := time.Now()
	r.log().Info("running preStop", "process", r.p.Name, "pid", pid, "handler", h.Kind())
	// owned here: cancel ends it, and its end is waited for below
	go func() { done <- r.runHandler(ctx, h) }()
	var err error
	select {
	case err = <-done:
	case e = <-exitCh:
		exited = true
	case <-r.sup.kill:
		late = true
	case <-grace:
		late = true
	}
	if exited || late {
		cancel()
		<-done
	}
	took := time.Since(began).Round(time.Millisecond).String()
	switch {
	case exited:
		r.log().Info("the process exited during its preStop: the handler was stopped", "process", r.p.Name, "handler", h.Kind(), "took", took)
	case late:
		r.log().Warn("preStop had not ended at the deadline", "process", r.p.Name, "handler", h.Kind(), "took", took)
	case err != nil:
		r.log().Warn("preStop failed: stopping the process all the same", "process", r.p.Name, "handler", h.Kind(), "took", took, "err", err)
	default:
		r.log().Info("preStop done", "process", r.p.Name, "handler", h.Kind(), "took", took)
	}
	return e, exited, late
}

// runHandler runs one preStop handler until its end or ctx's.
func (r *runner) runHandler(ctx context.Context, h *config.PreStop) error {
	switch {
	case h.Exec != nil:
		return r.preStopExec(ctx, h.Exec)
	case h.HTTPGet != nil:
		c, err := probe.New(&config.Probe{Kind: "http", Check: config.Check{HTTP: h.HTTPGet}}, &probe.Target{Process: r.p.Name})
		if err != nil {
			return err
		}
		if cl, ok := c.(interface{ Close() error }); ok {
			defer cl.Close()
		}
		return c.Check(ctx)
	}
	t := time.NewTimer(h.Sleep)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return nil
}

// preStopExec runs the command as the process runs: its user, the
// environment of its current run, its working directory and chroot, in a
// process group of its own. Its lines are the process's, marked
// hook=preStop. ctx's end kills its group.
func (r *runner) preStopExec(ctx context.Context, argv []string) error {
	env := r.environ()
	path, err := config.LookPath(argv[0], config.LookupEnv(env, "PATH"), r.p.Chroot)
	if err != nil {
		return err
	}
	pid, exitCh, err := r.spawn(path, argv, env, r.hookOut, r.hookErr, nil)
	if err != nil {
		return err
	}
	var e reaper.Exit
	select {
	case e = <-exitCh:
	case <-ctx.Done():
		_ = r.sup.opt.Reaper.Signal(pid, unix.SIGKILL, true)
		<-exitCh
		return ctx.Err()
	}
	if e.Code() != 0 {
		return fmt.Errorf("%s: %s", argv[0], e)
	}
	return nil
}
