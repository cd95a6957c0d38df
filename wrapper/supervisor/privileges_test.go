package supervisor

import (
	"strings"
	"syscall"
	"testing"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

// A user, group or chroot the wrapper cannot grant is refused before the
// start with the capability it lacks named; what needs nothing passes.
func TestMissingCapabilities(t *testing.T) {
	all := ^uint64(0)
	for _, c := range []struct {
		p    config.Process
		eff  uint64
		want []string // empty: no error
	}{
		{config.Process{}, 0, nil},
		{config.Process{Credential: &syscall.Credential{Uid: 1000, Gid: 1000, NoSetGroups: true}}, 0, []string{"CAP_SETUID (user 1000, the wrapper runs as 65532)", "CAP_SETGID (group 1000"}},
		{config.Process{Credential: &syscall.Credential{Uid: 65532, Gid: 65532, NoSetGroups: true}}, 0, nil},
		{config.Process{Credential: &syscall.Credential{Uid: 65532, Gid: 65532, Groups: []uint32{}}}, 0, []string{"CAP_SETGID"}},
		{config.Process{Chroot: "/jail"}, 1 << capSetuid, []string{"CAP_SYS_CHROOT (chroot /jail)"}},
		{config.Process{Credential: &syscall.Credential{Uid: 1000, Gid: 1000}, Chroot: "/jail"}, all, nil},
	} {
		err := missingCapabilities(&c.p, c.eff, 65532, 65532)
		if len(c.want) == 0 {
			if err != nil {
				t.Errorf("%+v: %v", c.p, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%+v with CapEff %x: no error, want %v", c.p, c.eff, c.want)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %v, want it to name %q", c.p, err, w)
			}
		}
	}
	if _, err := effectiveCapabilities(); err != nil {
		t.Errorf("CapEff of this process: %v", err)
	}
}
