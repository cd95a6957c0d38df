package probe

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

type floatingPidCheck struct{ file string }

func newFloatingPid(p *config.Probe, _ *Target) (Checker, error) {
	return &floatingPidCheck{file: p.FloatingPid.PidFile}, nil
}

// Check follows the pid that the pid file names now and wants it alive (a
// zombie is not).
func (f *floatingPidCheck) Check(context.Context) error {
	pid, err := ReadPidFile(f.file)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return fmt.Errorf("pid %d from %s is not running", pid, f.file)
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i > 0 && strings.HasPrefix(s[i+1:], " Z") {
		return fmt.Errorf("pid %d from %s has exited", pid, f.file)
	}
	return nil
}

// ReadPidFile reads a pid file: a positive number, surrounding spaces allowed.
func ReadPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds %q, not a pid", path, strings.TrimSpace(string(b)))
	}
	return pid, nil
}
