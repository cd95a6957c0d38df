package reaper

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
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
	r := running(t)

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
	r := running(t)

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

// startDaemon runs a shell that backgrounds script and prints its pid.
func startDaemon(t *testing.T, r *Reaper, script string) int {
	t.Helper()
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	// the whole script in the background: the shell exits at once, and the
	// script's process is left to the wrapper (here, the test) to reap
	_, ch, err := r.Start("/bin/sh", []string{"sh", "-c", "(" + script + ") & echo $!"}, &syscall.ProcAttr{Files: []uintptr{0, wr.Fd(), 2}})
	wr.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rd)
	if e := <-ch; e.Code() != 0 {
		t.Fatalf("shell exited %s", e)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestAdopt(t *testing.T) {
	if _, err := BecomeSubreaper(); err != nil {
		t.Fatal(err)
	}
	r := running(t)

	// a daemon still running when adopted: its own exit status arrives
	pid := startDaemon(t, r, "sleep 0.3; exit 4")
	ch, err := r.Adopt(pid, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e := <-ch; e.Pid != pid || e.Code() != 4 {
		t.Errorf("adopted daemon: %+v code %d", e, e.Code())
	}
	// a daemon that died before adoption (after its parent, so that it was
	// the wrapper's to reap): its exit was kept for it
	before := r.Orphans()
	pid = startDaemon(t, r, "sleep 0.1; exit 5")
	waitfor.Condition(t, 5*time.Second, "the early orphan to be reaped", func() bool { return r.Orphans() > before })
	ch, err = r.Adopt(pid, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-ch:
		if e.Code() != 5 {
			t.Errorf("late adoption: code %d", e.Code())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the early exit was lost")
	}
	// not our child: refused, never signalled
	if _, err := r.Adopt(os.Getppid(), nil); err == nil || !strings.Contains(err.Error(), "not a child of the wrapper") {
		t.Errorf("adopting a stranger: %v", err)
	}
}

// running returns a reaper whose loop runs until the test ends.
func running(t *testing.T) *Reaper {
	r := New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}
