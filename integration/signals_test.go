package integration

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// docker kill -s, the way an engineer or a child reaches the container's
// PID 1: every signal but those SPEC.md keeps is forwarded to the running
// process, none ends or stops the wrapper (SIGABRT and SIGSEGV included),
// and at docker stop what the one-shot step left behind gets SIGTERM too,
// without changing the exit code.
func TestDockerSignals(t *testing.T) {
	t.Parallel()
	c := run(t, []string{"-config", "/etc/pw/signals.yaml"}, "trap")
	id := c.GetContainerID()
	waitfor.Condition(t, 10*time.Second, "the leftover of setup to be kept", func() bool {
		return has(lines(t, c), "msg", "the process left processes in its process group: they run until the wrapper shuts down", "process", "setup")
	})
	for _, sig := range []string{"ABRT", "SEGV", "BUS", "FPE", "ILL", "TRAP", "SYS", "HUP", "USR1", "WINCH", "ALRM", "TSTP", "TTIN", "CONT", "PWR", "XCPU"} {
		if out, err := exec.Command("docker", "kill", "-s", sig, id).CombinedOutput(); err != nil {
			t.Fatalf("docker kill -s %s: %v %s", sig, err, out)
		}
		waitfor.Condition(t, 10*time.Second, "the process to get SIG"+sig, func() bool {
			return has(lines(t, c), "app", "trap", "msg", "got SIG"+sig)
		})
		st, err := c.State(context.Background())
		if err != nil || !st.Running || st.Paused {
			t.Fatalf("after SIG%s the container is not running: %+v %v", sig, st, err)
		}
	}
	timeout := 20 * time.Second
	if err := c.Stop(context.Background(), &timeout); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, c); code != 0 {
		t.Errorf("exit code %d, want 0 (the leftover's 5 does not count)", code)
	}
	ls := lines(t, c)
	if !has(ls, "app", "setup", "msg", "got SIGTERM") {
		t.Error("what setup left behind did not get SIGTERM at docker stop")
	}
	if !has(ls, "app", "trap", "msg", "got SIGTERM") {
		t.Error("the process did not get SIGTERM at docker stop")
	}
}

// docker kill -s TERM right after docker run: a signal the wrapper took
// (it logged "shutting down") always ends in 143, the code of a process
// ended by SIGTERM, whether or not the process had started; never 0, and
// never Go's exit 2.
func TestDockerEarlyStop(t *testing.T) {
	t.Parallel()
	for i := 0; i < 6; i++ {
		out, err := exec.Command("docker", "run", "-d", image, "-config", "/etc/pw/early.yaml").Output()
		if err != nil {
			t.Fatalf("docker run: %v", err)
		}
		id := strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command("docker", "rm", "-f", id).Run() })
		if out, err := exec.Command("docker", "kill", "-s", "TERM", id).CombinedOutput(); err != nil && !strings.Contains(string(out), "is not running") {
			t.Fatalf("docker kill: %v %s", err, out)
		}
		out, err = exec.Command("docker", "wait", id).Output()
		if err != nil {
			t.Fatalf("docker wait: %v", err)
		}
		code := strings.TrimSpace(string(out))
		logs, _ := exec.Command("docker", "logs", id).CombinedOutput()
		taken := strings.Contains(string(logs), `msg="shutting down"`)
		switch {
		case code == "143":
		case taken:
			t.Errorf("run %d: the wrapper took the SIGTERM and exited %s, want 143\n%s", i, code, logs)
		case code == "2" && strings.Contains(string(logs), `msg="starting"`):
			t.Errorf("run %d: exit 2 after the wrapper started\n%s", i, logs)
		default:
			t.Logf("run %d: SIGTERM before the wrapper took the stop signals: exit %s", i, code)
		}
	}
}
