package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// -install DIR copies the wrapper (and shared-lock beside it) into DIR, as
// an init container does into a volume the main container shares; the copy
// runs.
func TestInstall(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "shared", "process-wrapper")
	out, err := exec.Command(wrapperBin, "-install", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("-install: %v\n%s", err, out)
	}
	want, _ := os.ReadFile(wrapperBin)
	got, err := os.ReadFile(filepath.Join(dir, "process-wrapper"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the installed binary differs from the wrapper (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "shared-lock")); err != nil {
		t.Errorf("shared-lock, beside the wrapper, was not installed: %v", err)
	}
	v, err := exec.Command(filepath.Join(dir, "process-wrapper"), "-version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(v), "process-wrapper ") {
		t.Errorf("the installed binary: %v %s", err, v)
	}
	if out, err := exec.Command(wrapperBin, "-install", "/proc/no-such-dir").CombinedOutput(); err == nil || !strings.Contains(string(out), "cannot install") {
		t.Errorf("install into an impossible directory: %v %s", err, out)
	}
}
