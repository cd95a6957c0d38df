package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// reapConfig: one process leaves 1,000 orphans behind, supervised processes
// exit with known codes meanwhile, and a checker waits until the wrapper has
// no zombie child left.
func reapConfig(t *testing.T) string {
	done := filepath.Join(t.TempDir(), "orphans-done")
	return config(t, fmt.Sprintf(`
- {name: orphaner, entrypoint: CHILD, args: [orphans, "1000", "0", %[1]q], restartPolicy: Never}
- {name: worker, entrypoint: sh, args: [-c, "sleep 0.3; exit 7"], restartPolicy: Never}
- {name: fine, entrypoint: CHILD, args: [exit, "0"], restartPolicy: OnFailure}
- {name: checker, entrypoint: CHILD, args: [reaped, %[1]q], restartPolicy: Never}
`, done))
}

func checkReaping(t *testing.T, w *wrapper) {
	t.Helper()
	if code := w.wait(60 * time.Second); code != 7 {
		t.Errorf("exit code %d, want 7 (the worker's)", code)
	}
	w.waitLine(time.Second, "app", "orphaner", "msg", "left 1000 orphans")
	w.waitLine(time.Second, "app", "checker", "msg", "live=0 zombies=0")
	w.waitLine(time.Second, "msg", "process exited", "process", "worker", "code", "7")
	w.waitLine(time.Second, "msg", "process exited", "process", "orphaner", "code", "0")
	w.waitLine(time.Second, "msg", "exiting", "code", "7", "orphans_reaped", "1000")
}

// As PID 1 of its own PID namespace, the wrapper reaps every orphan and
// still reports every supervised exit code.
func TestReapsOrphansAsPID1(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("unshare --pid needs root")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare (util-linux) is needed for the PID 1 test")
	}
	t.Parallel()
	w := start(t, reapConfig(t), opts{prefix: []string{"unshare", "--pid", "--fork", "--mount-proc"}})
	checkReaping(t, w)
	w.waitLine(time.Second, "msg", "starting", "pid", "1")
}

// Not PID 1, the wrapper is a child subreaper and reaps the orphans the same way.
func TestReapsOrphansAsSubreaper(t *testing.T) {
	t.Parallel()
	w := start(t, reapConfig(t), opts{})
	checkReaping(t, w)
}
