package cluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// One cluster per machine: the kubelet's sysctls, its fixed paths and the
// kubepods cgroups are the host's, so two kubelets would undo each other.
// The running cluster's record is in registryDir; a run that finds the
// record of a run that was killed tears that cluster down first.
var registryDir = "/run/pw-kube" // a variable for the tests of claim

func stateFile() string { return filepath.Join(registryDir, "cluster.json") }

// hostSysctls are what the cluster may set: the kubelet's three at its
// start, whatever its config says (protectKernelDefaults only makes it
// refuse to start instead); IP forwarding, which the CNI bridge turns on;
// and kube-proxy's (its conntrack ones are left alone by its flags, and
// saved all the same). Those the kernel lacks are skipped.
var hostSysctls = []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops",
	"net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet", "net/netfilter/nf_conntrack_max",
	"net/netfilter/nf_conntrack_tcp_timeout_established", "net/netfilter/nf_conntrack_tcp_timeout_close_wait"}

// proxyTables are kube-proxy's nftables tables (nftables mode).
var proxyTables = [][]string{{"ip", "kube-proxy"}, {"ip6", "kube-proxy"}}

// fixedPaths are the kubelet's paths that no flag moves.
var fixedPaths = []string{"/var/log/containers", "/var/lib/kubelet/device-plugins"}

// hostState is what a cluster changes on the machine, recorded before it is
// changed, so that Stop, or the next run after a kill, can undo it.
type hostState struct {
	Dir    string `json:"dir"`
	Sock   string `json:"sock"`
	Bridge string `json:"bridge"`
	Kube   string `json:"kube"`
	// Owner is the process whose run this is, and OwnerStart its start time
	// (so that a reused pid is not taken for it). Owner 0 is make kube-up's
	// cluster: it is kept until make kube-down.
	Owner      int               `json:"owner"`
	OwnerStart string            `json:"ownerStart"`
	Sysctls    map[string]string `json:"sysctls"` // as they were before the kubelet set them
	Created    []string          `json:"created"` // fixed paths that did not exist before
}

// claim makes this run the machine's cluster: it refuses while another
// cluster runs, tears down what a killed run left, and records the host's
// state before anything of the cluster changes it.
func claim(l layout, kube string, kept bool) (hostState, error) {
	if err := os.MkdirAll(registryDir, 0o755); err != nil {
		return hostState{}, fmt.Errorf("cluster: %w", err)
	}
	unlock, err := lock()
	if err != nil {
		return hostState{}, err
	}
	defer unlock()
	if prev, err := readState(); err != nil {
		return hostState{}, err
	} else if prev != nil {
		if prev.Owner != 0 && prev.Owner != os.Getpid() && startTime(prev.Owner) == prev.OwnerStart {
			return hostState{}, fmt.Errorf("cluster: the cluster of pid %d (in %s) runs on this machine: one cluster at a time", prev.Owner, prev.Dir)
		}
		if prev.Owner == 0 && running(prev.Dir) {
			return hostState{}, fmt.Errorf("cluster: make kube-up's cluster runs in %s: make kube-down first", prev.Dir)
		}
		fmt.Fprintf(os.Stderr, "cluster: removing what a killed run left (%s)\n", prev.Dir)
		if err := teardown(*prev); err != nil {
			return hostState{}, fmt.Errorf("cluster: an earlier run's leftovers: %w", err)
		}
	}
	if left := kubepodsCgroups(); len(left) > 0 {
		return hostState{}, fmt.Errorf("cluster: another kubelet's cgroups are on this machine (%s): one kubelet at a time", left[0])
	}
	st := hostState{Dir: l.dir, Sock: l.sock, Bridge: l.bridge, Kube: kube, Sysctls: map[string]string{}}
	if !kept {
		st.Owner = os.Getpid()
		st.OwnerStart = startTime(st.Owner)
	}
	for _, t := range proxyTables {
		if exec.Command("nft", "list", "table", t[0], t[1]).Run() == nil {
			return hostState{}, fmt.Errorf("cluster: the nftables table %s %s is on this machine: another kube-proxy runs (one at a time)", t[0], t[1])
		}
	}
	for _, k := range hostSysctls {
		b, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return hostState{}, fmt.Errorf("cluster: sysctl %s: %w", k, err)
		}
		st.Sysctls[k] = strings.TrimSpace(string(b))
	}
	for _, p := range fixedPaths {
		if top := firstMissing(p); top != "" {
			st.Created = append(st.Created, top)
		}
	}
	return st, writeState(st)
}

// teardown undoes a cluster, whether its components still run or not, in
// the order that lets each step work: the pods go while the kubelet and the
// API server run (their containers get SIGTERM, CNI releases their
// addresses); then the components by pid; kube-proxy's tables; what is left in the run's
// containerd; the processes left in the kubepods cgroups; the mounts under
// the run's directories; the cgroups; the FORWARD rules and the bridge;
// the sysctls; the fixed
// paths; the run's directory. Each step is tried; the errors are joined.
// The record and the run's directory stay (for the next run to try again)
// only when a step that restores the host failed.
func teardown(st hostState) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(stopNamed(st.Dir, 15*time.Second, "scheduler", "controller-manager"))
	// the pods' graceful end: what it fails to end, the steps below end by
	// force, so its failure is reported but keeps nothing of the run (a
	// pod whose sandbox never came up cannot be deleted gracefully)
	var graceful error
	if alive(st.Dir, "apiserver") && alive(st.Dir, "kubelet") {
		graceful = deletePods(st)
	}
	add(stopNamed(st.Dir, 30*time.Second, "proxy", "dns", "kubelet", "apiserver", "etcd"))
	for _, t := range proxyTables {
		if exec.Command("nft", "list", "table", t[0], t[1]).Run() == nil {
			add(run("nft", "delete", "table", t[0], t[1]))
		}
	}
	if alive(st.Dir, "containerd") {
		add(emptyContainerd(filepath.Join(st.Sock, "containerd.sock")))
	}
	add(stopComponents(st.Dir, 15*time.Second, "containerd"))
	add(killLeft(st))
	add(unmountUnder(st.Dir, st.Sock))
	add(removeCgroups())
	for _, rule := range forwardRules(st.Bridge) {
		for exec.Command("iptables", append([]string{"-C", "FORWARD"}, rule...)...).Run() == nil {
			if err := run("iptables", append([]string{"-D", "FORWARD"}, rule...)...); err != nil {
				add(err)
				break
			}
		}
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", st.Bridge)); err == nil {
		add(run("ip", "link", "del", st.Bridge))
	}
	for k, v := range st.Sysctls {
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
			add(fmt.Errorf("restore sysctl %s=%s: %w", k, v, err))
		}
	}
	for _, p := range st.Created {
		add(os.RemoveAll(p))
	}
	add(os.RemoveAll(st.Sock))
	if len(errs) == 0 {
		// the run's directory goes last, and only with nothing mounted
		// under it (RemoveAll would descend into a mount)
		add(unmountUnder(st.Dir))
	}
	if len(errs) == 0 {
		add(os.RemoveAll(st.Dir))
		if err := os.Remove(stateFile()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			add(err)
		}
	}
	return errors.Join(append(errs, graceful)...)
}

// deletePods deletes every pod, its finalizers first (a test's, left by a
// killed run), and waits until they are gone: the kubelet has then stopped
// their containers and sandboxes.
func deletePods(st hostState) error {
	kubectl := func(args ...string) ([]byte, error) {
		cmd := exec.Command(st.Kube, append([]string{"kubectl", "--kubeconfig", filepath.Join(st.Dir, "admin.kubeconfig"), "--request-timeout=10s"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return out, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return out, nil
	}
	out, err := kubectl("get", "pods", "-A", "-o", `jsonpath={range .items[?(@.metadata.finalizers)]}{.metadata.namespace}{" "}{.metadata.name}{"\n"}{end}`)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if ns, name, ok := strings.Cut(line, " "); ok {
			if _, err := kubectl("patch", "pod", "-n", ns, name, "--type=merge", "-p", `{"metadata":{"finalizers":null}}`); err != nil {
				return err
			}
		}
	}
	_, err = kubectl("delete", "pods", "--all", "-A", "--grace-period=5", "--wait", "--timeout=60s")
	return err
}

// emptyContainerd removes every container of the run's containerd, killing
// its task first: what deleting the pods did not.
func emptyContainerd(sock string) error {
	ctr := func(args ...string) (string, error) {
		out, err := exec.Command("ctr", append([]string{"--address", sock, "-n", "k8s.io"}, args...)...).CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	ids, err := ctr("containers", "ls", "-q")
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range strings.Fields(ids) {
		ctr("tasks", "kill", "-s", "SIGKILL", id) // no task, or already stopped: the delete below says what matters
		if _, err := ctr("tasks", "delete", "-f", id); err != nil && !strings.Contains(err.Error(), "not found") {
			errs = append(errs, err)
		}
		if _, err := ctr("containers", "delete", id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killLeft kills what still runs of the cluster once its components are
// stopped: processes in the kubepods cgroups (a container whose shim is
// gone) and containerd's shims, which lead process groups of their own and
// name the run's containerd socket. This process and its ancestors (a
// shell or go run naming the run's directory) are never among them.
func killLeft(st hostState) error {
	pids := map[int]bool{}
	for _, cg := range kubepodsCgroups() {
		filepath.WalkDir(cg, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Name() == "cgroup.procs" {
				for _, pid := range readPids(p) {
					pids[pid] = true
				}
			}
			return nil
		})
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		var pid int
		fmt.Sscanf(filepath.Base(p), "%d", &pid)
		if ours(pid, st.Sock) {
			pids[pid] = true
		}
	}
	for pid := os.Getpid(); pid > 1; pid = parent(pid) {
		delete(pids, pid)
	}
	for pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if !waitfor.Poll(10*time.Second, func() bool {
		for pid := range pids {
			reap(pid)
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil && !zombie(pid) {
				return false
			}
		}
		return true
	}) {
		return fmt.Errorf("the cluster's processes %v outlived SIGKILL", slices.Collect(maps.Keys(pids)))
	}
	return nil
}

// unmountUnder detaches every mount under the given directories, the
// deepest first (the kubelet bind-mounts its root onto itself, containerd
// mounts rootfs overlays, network namespaces and shm).
func unmountUnder(dirs ...string) error {
	var errs []error
	for range 3 { // a mount revealed by detaching one on top of it is taken on the next pass
		var points []string
		for _, p := range mountPoints() {
			for _, d := range dirs {
				if p == d || strings.HasPrefix(p, d+"/") {
					points = append(points, p)
				}
			}
		}
		if len(points) == 0 {
			return nil
		}
		sort.Sort(sort.Reverse(sort.StringSlice(points)))
		errs = errs[:0]
		for _, p := range points {
			if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
			}
		}
	}
	return errors.Join(errs...)
}

// mountPoints are this mount namespace's mount points, as mountinfo has
// them (octal escapes undone).
func mountPoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			points = append(points, unescapeMount(fields[4]))
		}
	}
	return points
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// kubepodsCgroups are the kubelet's cgroup trees (cgroupfs driver), in
// each v1 hierarchy and in a v2 one.
func kubepodsCgroups() []string {
	var found []string
	for _, pat := range []string{"/sys/fs/cgroup/kubepods", "/sys/fs/cgroup/*/kubepods"} {
		m, _ := filepath.Glob(pat)
		found = append(found, m...)
	}
	return found
}

// removeCgroups removes the kubepods trees, leaves first.
func removeCgroups() error {
	var errs []error
	for _, cg := range kubepodsCgroups() {
		var dirs []string
		filepath.WalkDir(cg, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

func readPids(path string) []int {
	b, _ := os.ReadFile(path)
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		var pid int
		if _, err := fmt.Sscanf(f, "%d", &pid); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive tells whether the component name of the cluster in dir runs.
func alive(dir, name string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "pids", name))
	if err != nil {
		return false
	}
	var pid int
	fmt.Sscanf(strings.TrimSpace(string(b)), "%d", &pid)
	return pid > 1 && ours(pid, dir)
}

// running tells whether any component of the cluster in dir runs.
func running(dir string) bool {
	names, _ := filepath.Glob(filepath.Join(dir, "pids", "*"))
	for _, n := range names {
		if alive(dir, filepath.Base(n)) {
			return true
		}
	}
	return false
}

// forwardRules accept what the pod bridge forwards, into it and out of
// it, in the host's iptables FORWARD chain.
func forwardRules(bridge string) [][]string {
	comment := []string{"-m", "comment", "--comment", "process-wrapper test cluster " + bridge, "-j", "ACCEPT"}
	return [][]string{append([]string{"-i", bridge}, comment...), append([]string{"-o", bridge}, comment...)}
}

// stat is /proc/PID/stat from its third field on (the state first),
// split: the command before it is in parentheses and may hold spaces (nil
// when pid does not run).
func stat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// startTime is field 22 of /proc/PID/stat: with the pid, it names one
// process for good ("" when pid does not run).
func startTime(pid int) string {
	if f := stat(pid); len(f) > 19 {
		return f[19]
	}
	return ""
}

// parent is pid's parent (0 when pid does not run).
func parent(pid int) int {
	var ppid int
	if f := stat(pid); len(f) > 1 {
		fmt.Sscanf(f[1], "%d", &ppid)
	}
	return ppid
}

func zombie(pid int) bool {
	f := stat(pid)
	return len(f) == 0 || f[0] == "Z"
}

// firstMissing is the topmost directory on the way to p that does not
// exist ("" when p exists).
func firstMissing(p string) string {
	if _, err := os.Lstat(p); err == nil {
		return ""
	}
	for {
		parent := filepath.Dir(p)
		if _, err := os.Lstat(parent); err == nil || parent == p {
			return p
		}
		p = parent
	}
}

func lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(registryDir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("cluster: lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

func readState() (*hostState, error) {
	b, err := os.ReadFile(stateFile())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	var st hostState
	if err := json.Unmarshal(b, &st); err != nil || st.Dir == "" {
		return nil, fmt.Errorf("cluster: %s is not a cluster's record (%v): remove it once the cluster it named is gone", stateFile(), err)
	}
	return &st, nil
}

func writeState(st hostState) error {
	b, _ := json.MarshalIndent(st, "", "  ")
	tmp := stateFile() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if err := os.Rename(tmp, stateFile()); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}
