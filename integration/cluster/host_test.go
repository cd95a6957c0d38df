package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A mount point with a space is as mountinfo escapes it.
func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/tab\011x`: "/tab\tx", `/odd\04`: `/odd\04`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

// The fixed paths the kubelet creates are recorded by their topmost new
// directory, and nothing is recorded for a path that exists.
func TestFirstMissing(t *testing.T) {
	dir := t.TempDir()
	if got := firstMissing(dir); got != "" {
		t.Errorf("an existing dir: %q", got)
	}
	if got, want := firstMissing(filepath.Join(dir, "a", "b", "c")), filepath.Join(dir, "a"); got != want {
		t.Errorf("firstMissing = %q, want %q", got, want)
	}
}

// A process is the cluster's when its command line names the cluster's
// directory or a path under it, not a directory whose name only begins
// like it (the run of pid 12 is not the run of pid 123).
func TestOursByDirectory(t *testing.T) {
	dir := t.TempDir()
	for arg, want := range map[string]bool{dir: true, dir + "/etcd": true, "--config=" + dir + "/k.yaml": true, dir + "3/etcd": false, dir + "x": false} {
		cmd := exec.Command("/bin/sh", "-c", "sleep 30", arg)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if got := ours(cmd.Process.Pid, dir); got != want {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid))
			t.Errorf("ours with argument %q = %v, want %v (cmdline %q)", arg, got, want, b)
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
	if startTime(os.Getpid()) == "" || parent(os.Getpid()) != os.Getppid() || zombie(os.Getpid()) {
		t.Errorf("this process's stat: start %q, parent %d (want %d), zombie %v", startTime(os.Getpid()), parent(os.Getpid()), os.Getppid(), zombie(os.Getpid()))
	}
}
