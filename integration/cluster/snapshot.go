package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// HostSnapshot is what a cluster may change on the machine, one line per
// fact: the sysctls it may set, the mount points (Docker's own left out: the
// engine may run other work meanwhile), the kubepods cgroups, the network
// links, the fixed paths, the nftables and iptables rules. Two snapshots
// of a host left as it was found are equal.
func HostSnapshot() []string {
	var lines []string
	for _, k := range hostSysctls {
		b, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			continue
		}
		lines = append(lines, fmt.Sprintf("sysctl %s=%s", k, strings.TrimSpace(string(b))))
	}
	for _, p := range mountPoints() {
		if !strings.HasPrefix(p, "/var/lib/docker/") && !strings.HasPrefix(p, "/run/docker/") {
			lines = append(lines, "mount "+p)
		}
	}
	for _, cg := range kubepodsCgroups() {
		lines = append(lines, "cgroup "+cg)
	}
	links, _ := filepath.Glob("/sys/class/net/*")
	for _, l := range links {
		name := filepath.Base(l)
		master, _ := os.Readlink(filepath.Join(l, "master"))
		if strings.HasPrefix(name, "veth") && (strings.HasSuffix(master, "/docker0") || strings.Contains(master, "/br-")) {
			continue // a container of Docker's
		}
		lines = append(lines, "link "+name)
	}
	for _, p := range append([]string{"/var/lib/kubelet", "/run/pw-kube/cluster.json"}, fixedPaths...) {
		if _, err := os.Lstat(p); err == nil {
			lines = append(lines, "path "+p)
		}
	}
	counters := regexp.MustCompile(`\[\d+:\d+\]|packets \d+ bytes \d+`)
	for _, c := range [][]string{{"nft", "list", "ruleset"}, {"iptables-save"}, {"ip6tables-save"}} {
		out, err := exec.Command(c[0], c[1:]...).Output()
		if err != nil {
			continue // the tool is not on this machine
		}
		for _, l := range strings.Split(string(out), "\n") {
			if l = strings.TrimSpace(counters.ReplaceAllString(l, "")); l != "" && !strings.HasPrefix(l, "#") {
				lines = append(lines, c[0]+" "+l)
			}
		}
	}
	slices.Sort(lines)
	return lines
}

// HostDiff is what differs between two snapshots: "-" for a line gone,
// "+" for one that appeared ("" when they are equal).
func HostDiff(before, after []string) string {
	var b strings.Builder
	for _, l := range before {
		if !slices.Contains(after, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range after {
		if !slices.Contains(before, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}

// Running tells whether any component of the cluster in dir runs.
func Running(dir string) bool { return running(dir) }
