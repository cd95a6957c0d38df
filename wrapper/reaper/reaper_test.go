package reaper

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// Supervised children exit with known codes while orphans die around them:
// every supervised status reaches its owner, every orphan is reaped.
func TestSupervisedStatusesSurviveOrphanStorm(t *testing.T) {
	if _, err := BecomeSubreaper(); err != nil {
		t.Fatal(err)
	}
	r := New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	const orphanMakers, orphansEach, supervised = 10, 20, 60
	var wg sync.WaitGroup
	errs := make(chan error, supervised+orphanMakers)
	for i := 0; i < orphanMakers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// each subshell backgrounds sleeps and exits: they become our orphans
			script := ""
			for j := 0; j < orphansEach; j++ {
				script += "(sleep 0.0" + fmt.Sprint(j%10) + " &); "
			}
			_, ch, err := r.Start("/bin/sh", []string{"sh", "-c", script + "exit 0"}, &syscall.ProcAttr{})
			if err != nil {
				errs <- err
				return
			}
			if e := <-ch; e.Code() != 0 {
				errs <- fmt.Errorf("orphan maker exited %s", e)
			}
		}()
	}
	for i := 0; i < supervised; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ch, err := r.Start("/bin/sh", []string{"sh", "-c", fmt.Sprintf("exit %d", i)}, &syscall.ProcAttr{})
			if err != nil {
				errs <- err
				return
			}
			select {
			case e := <-ch:
				if e.Code() != i {
					errs <- fmt.Errorf("child %d: got %s", i, e)
				}
			case <-time.After(10 * time.Second):
				errs <- fmt.Errorf("child %d: no exit status", i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// every sleep of every subshell is an orphan; each subshell itself too
	// (the "( ... &)" subshell exits before the sleep it started)
	waitfor.Condition(t, 10*time.Second, "every orphan reaped", func() bool {
		return r.Orphans() >= orphanMakers*orphansEach
	})
}

func TestSignalGroupAndExitCodes(t *testing.T) {
	r := New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	pid, ch, err := r.Start("/bin/sleep", []string{"sleep", "30"}, &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Setpgid: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Signal(pid, syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	e := <-ch
	if e.Code() != 137 || e.String() != "killed by signal 9 (killed)" {
		t.Errorf("exit %d %q", e.Code(), e)
	}
	// a reaped pid is never signalled again
	if err := r.Signal(pid, syscall.SIGTERM, false); err == nil {
		t.Error("signalled a reaped pid")
	}
}
