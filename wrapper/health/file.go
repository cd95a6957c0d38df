package health

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/wrapper/state"
)

// ReadinessFile is the "started" marker: written once every process is
// started and ready (and the post-start hooks have run), removed at
// shutdown only: losing readiness later does not remove it.
type ReadinessFile struct {
	Path  string
	State *state.Store // for Run
	Log   *logline.Logger

	mu      sync.Mutex
	removed bool // once removed at shutdown, never written again
}

// Run writes the file once the state is ready for the first time (see
// WaitAndWrite); a failure is logged.
func (f *ReadinessFile) Run(ctx context.Context) {
	if err := f.WaitAndWrite(ctx, f.State); err != nil {
		f.Log.Error("cannot write the readiness file", "err", err)
	}
}

// WaitAndWrite waits until the state is ready for the first time, then
// writes the file. It returns when written, or when ctx ends.
func (f *ReadinessFile) WaitAndWrite(ctx context.Context, st *state.Store) error {
	for {
		sum, changed := st.Summarize()
		if sum.Stopping {
			return nil
		}
		if sum.Ready() {
			return f.write()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

func (f *ReadinessFile) write() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Path == "" || f.removed {
		return nil
	}
	// write then rename: a reader never sees a half-written file
	tmp := filepath.Join(filepath.Dir(f.Path), "."+filepath.Base(f.Path)+".tmp")
	if err := os.WriteFile(tmp, []byte(time.Now().UTC().Format(time.RFC3339Nano)+"\n"), 0o644); err != nil {
		return fmt.Errorf("readiness file: %w", err)
	}
	if err := os.Rename(tmp, f.Path); err != nil {
		return fmt.Errorf("readiness file: %w", err)
	}
	f.Log.Info("every process is ready: wrote the readiness file", "path", f.Path)
	return nil
}

// Remove deletes the file (at shutdown).
func (f *ReadinessFile) Remove() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = true
	if f.Path == "" {
		return
	}
	if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		f.Log.Warn("cannot remove the readiness file", "path", f.Path, "err", err)
	}
}
