package probe

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

type fileCheck struct{ c *config.FileCheck }

func newFile(p *config.Probe, _ *Target) (Checker, error) { return &fileCheck{c: p.File}, nil }

// Check wants the path to exist, and to be non-empty or recently modified
// when asked.
func (f *fileCheck) Check(context.Context) error {
	fi, err := os.Stat(f.c.Path)
	if err != nil {
		return err
	}
	if f.c.NonEmpty && fi.Size() == 0 {
		return fmt.Errorf("%s is empty", f.c.Path)
	}
	if maxAge := time.Duration(f.c.MaxAge); maxAge > 0 {
		if age := time.Since(fi.ModTime()); age > maxAge {
			return fmt.Errorf("%s was modified %s ago (max %s)", f.c.Path, age.Round(time.Millisecond), maxAge)
		}
	}
	return nil
}
