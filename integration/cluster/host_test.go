package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
		cmd := exec.Command("/bin/sh", "-c", "sleep 30; :", arg) // "; :": sh does not exec sleep, and keeps arg
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// at once: a command line that reads empty right after execve is waited for
		cmdline := fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid)
		if got := ours(cmd.Process.Pid, dir); got != want {
			b, _ := os.ReadFile(cmdline)
			t.Errorf("ours with argument %q = %v, want %v (cmdline %q)", arg, got, want, b)
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
	if startTime(os.Getpid()) == "" || parent(os.Getpid()) != os.Getppid() || zombie(os.Getpid()) {
		t.Errorf("this process's stat: start %q, parent %d (want %d), zombie %v", startTime(os.Getpid()), parent(os.Getpid()), os.Getppid(), zombie(os.Getpid()))
	}
}

// One cluster per machine: a run's claim is refused while another run's
// cluster goes on, or while make kube-up's has a component running; the
// record of a killed run is torn down and replaced by the new run's.
func TestClaim(t *testing.T) {
	registryDir = t.TempDir()
	defer func() { registryDir = "/run/pw-kube" }()
	l := layout{dir: t.TempDir(), sock: filepath.Join(registryDir, "sock"), bridge: "pwkubetest0"}

	writeState(hostState{Dir: "/elsewhere", Owner: os.Getppid(), OwnerStart: startTime(os.Getppid())}) // go test, which runs on
	if _, err := claim(l, "kube", false); err == nil || !strings.Contains(err.Error(), "runs on this machine: one cluster at a time") {
		t.Errorf("a running run's cluster: %v", err)
	}

	upDir := t.TempDir()
	etcd, err := startComponent(upDir, "etcd", nil, "/bin/sh", "-c", "sleep 300", upDir)
	if err != nil {
		t.Fatal(err)
	}
	defer stopComponents(upDir, time.Second)
	writeState(hostState{Dir: upDir})
	if _, err := claim(l, "kube", false); err == nil || !strings.Contains(err.Error(), "make kube-down first") {
		t.Errorf("make kube-up's cluster with its etcd (pid %d) running: %v", etcd.pid, err)
	}

	killed := t.TempDir()
	os.WriteFile(filepath.Join(killed, "left"), nil, 0o644)
	writeState(hostState{Dir: killed, Sock: filepath.Join(registryDir, "old"), Owner: 1 << 22, OwnerStart: "1", Bridge: "pwkubetest1"})
	st, err := claim(l, "kube", false)
	if err != nil {
		t.Fatalf("a killed run's record: %v", err)
	}
	if _, err := os.Stat(killed); !os.IsNotExist(err) {
		t.Errorf("the killed run's directory is left: %v", err)
	}
	got, err := readState()
	if err != nil || got == nil || got.Dir != l.dir || got.Owner != os.Getpid() || got.Sysctls["vm/overcommit_memory"] != st.Sysctls["vm/overcommit_memory"] || len(st.Sysctls) < 3 {
		t.Errorf("the new record: %+v, %v (claimed %+v)", got, err, st)
	}
}
