// Package install is -install DIR: the injection of the wrapper into an
// image that does not have it. An init container started from the
// wrapper's image (FROM scratch: no shell, no cp) copies the binary into a
// volume shared with the main container, whose entrypoint becomes
// DIR/process-wrapper.
package install

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/process-wrapper/process-wrapper/internal/logline"
)

// Binaries copies the running executable to dir/process-wrapper, and the
// shared-lock binary when it sits beside the executable, each atomically
// (a temporary file renamed into place, mode 0755), so that a main
// container never sees half a binary.
func Binaries(dir string, log *logline.Logger) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if err := copyFile(exe, filepath.Join(dir, "process-wrapper")); err != nil {
		return err
	}
	log.Info("installed", "path", filepath.Join(dir, "process-wrapper"))
	lock := filepath.Join(filepath.Dir(exe), "shared-lock")
	if _, err := os.Stat(lock); err == nil {
		if err := copyFile(lock, filepath.Join(dir, "shared-lock")); err != nil {
			return err
		}
		log.Info("installed", "path", filepath.Join(dir, "shared-lock"))
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".install-*")
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing to remove
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return fmt.Errorf("install %s: %w", dst, err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return fmt.Errorf("install %s: %w", dst, err)
	}
	// written back before the rename: no half binary after a crash, and
	// clean pages, which the wrapper can give back after its start-up
	// (the kernel does not reclaim dirty ones; see package pageout)
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("install %s: %w", dst, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	return nil
}
