package probe

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

// Beats holds the last heartbeat of each process that beats over HTTP.
type Beats struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// NewBeats returns an empty registry.
func NewBeats() *Beats { return &Beats{last: map[string]time.Time{}} }

// Beat records a heartbeat of process now.
func (b *Beats) Beat(process string) {
	b.mu.Lock()
	b.last[process] = time.Now()
	b.mu.Unlock()
}

// Last returns the last heartbeat of process.
func (b *Beats) Last(process string) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.last[process]
	return t, ok
}

type heartBeatCheck struct {
	c *config.HeartBeatCheck
	t *Target
}

func newHeartBeat(p *config.Probe, t *Target) (Checker, error) {
	return &heartBeatCheck{c: p.HeartBeat, t: t}, nil
}

// Check wants a beat younger than MaxAge: the file's modification time, or
// the last POST to /heartbeat/<process>.
func (h *heartBeatCheck) Check(context.Context) error {
	var last time.Time
	if h.c.File != "" {
		fi, err := os.Stat(h.c.File)
		if err != nil {
			return fmt.Errorf("no heartbeat: %w", err)
		}
		last = fi.ModTime()
	} else {
		t, ok := h.t.Beats.Last(h.t.Process)
		if !ok {
			return fmt.Errorf("no heartbeat yet on /heartbeat/%s", h.t.Process)
		}
		last = t
	}
	if age := time.Since(last); age > time.Duration(h.c.MaxAge) {
		return fmt.Errorf("last heartbeat %s ago (max %s)", age.Round(time.Millisecond), time.Duration(h.c.MaxAge))
	}
	return nil
}
