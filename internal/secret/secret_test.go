package secret

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The secret comes without the spaces and newline around it; an empty file
// and a missing one are errors naming what was read.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	full, empty := filepath.Join(dir, "token"), filepath.Join(dir, "empty")
	os.WriteFile(full, []byte("  s3cret\n"), 0o600)
	os.WriteFile(empty, []byte(" \n"), 0o600)
	if got, err := Read("-token-file", full); err != nil || got != "s3cret" {
		t.Errorf("Read = %q, %v; want s3cret", got, err)
	}
	if _, err := Read("-token-file", empty); err == nil || err.Error() != "-token-file "+empty+" is empty" {
		t.Errorf("empty file: %v", err)
	}
	if _, err := Read("-token-file", filepath.Join(dir, "none")); err == nil || !strings.HasPrefix(err.Error(), "-token-file: ") {
		t.Errorf("missing file: %v", err)
	}
}
