package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// Components are stopped by their pid files: SIGTERM, then SIGKILL for one
// that ignores it; a pid file whose pid now runs another program leaves
// that program alone.
func TestStopComponents(t *testing.T) {
	dir := t.TempDir()
	polite, err := startComponent(dir, "polite", nil, "/bin/sh", "-c", "sleep 300; :", dir)
	if err != nil {
		t.Fatal(err)
	}
	// sh ignores TERM and waits on its child: only SIGKILL ends it
	stubborn, err := startComponent(dir, "stubborn", nil, "/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done", dir)
	if err != nil {
		t.Fatal(err)
	}
	// a pid recorded for a program that is not the cluster's: this test's own
	os.WriteFile(filepath.Join(dir, "pids", "stranger"), []byte(strconv.Itoa(os.Getpid())), 0o644)

	waitfor.Condition(t, 10*time.Second, "the stubborn component's start", func() bool {
		return strings.Contains(readFile(filepath.Join(dir, "logs", "stubborn.log")), "ready")
	})
	if !ours(polite.pid, dir) || !ours(stubborn.pid, dir) {
		t.Fatal("started components are not seen as the cluster's")
	}
	if err := stopComponents(dir, 500*time.Millisecond, "stubborn"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*component{polite, stubborn} {
		if err := syscall.Kill(c.pid, 0); err == nil && ours(c.pid, dir) {
			t.Errorf("%s (pid %d) still runs", c.name, c.pid)
		}
	}
	// nor anything they started: the polite one's sleep
	if out, _ := exec.Command("pgrep", "-f", "sleep 300").Output(); len(out) > 0 {
		for _, pid := range strings.Fields(string(out)) {
			if n, _ := strconv.Atoi(pid); n > 0 && pgid(n) == polite.pid {
				t.Errorf("the polite component's child %d was left", n)
			}
		}
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "pids", "*")); len(names) != 0 {
		t.Errorf("pid files left: %v", names)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func pgid(pid int) int {
	g, err := syscall.Getpgid(pid)
	if err != nil {
		return -1
	}
	return g
}
