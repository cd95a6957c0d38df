package supervisor

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

// The capabilities a process's user, group and chroot need of the wrapper
// (capability(7) numbers).
const (
	capSetgid    = 6
	capSetuid    = 7
	capSysChroot = 18
)

// privilegeError says which capabilities the process's user, group or
// chroot need that the wrapper lacks (nil when it has them, or needs none),
// before a start that would only fail with "operation not permitted". A
// container under restricted Pod Security runs without any of them.
func privilegeError(p *config.Process) error {
	if p.Credential == nil && p.Chroot == "" {
		return nil
	}
	eff, err := effectiveCapabilities()
	if err != nil {
		return nil // not knowable here: the start says what fails
	}
	return missingCapabilities(p, eff, os.Geteuid(), os.Getegid())
}

func missingCapabilities(p *config.Process, eff uint64, euid, egid int) error {
	var missing []string
	need := func(c uint, name, why string) {
		if eff&(1<<c) == 0 {
			missing = append(missing, name+" ("+why+")")
		}
	}
	if c := p.Credential; c != nil {
		if c.Uid != uint32(euid) {
			need(capSetuid, "CAP_SETUID", fmt.Sprintf("user %d, the wrapper runs as %d", c.Uid, euid))
		}
		if c.Gid != uint32(egid) || !c.NoSetGroups {
			need(capSetgid, "CAP_SETGID", fmt.Sprintf("group %d and its supplementary groups", c.Gid))
		}
	}
	if p.Chroot != "" {
		need(capSysChroot, "CAP_SYS_CHROOT", "chroot "+p.Chroot)
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("the wrapper lacks %s: run it as root, or add the capability to the container's securityContext (restricted Pod Security allows neither; leave user, group and chroot out there)", strings.Join(missing, ", "))
}

// effectiveCapabilities is CapEff of /proc/self/status.
func effectiveCapabilities() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapEff in /proc/self/status")
}
