package pageout

import (
	"context"
	"runtime/debug"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/wrapper/state"
)

// AfterStartup gives back the binary's pages that only the start-up used,
// once every process has been started (or 5 s passed: one may wait long
// for a shared lock or a dependency) and a second more, so that the first
// probes have run.
type AfterStartup struct {
	State *state.Store
	Log   *logline.Logger
}

// Run waits for that moment, pages out, and returns; or returns when ctx
// ends first.
func (a *AfterStartup) Run(ctx context.Context) {
	limit := time.NewTimer(5 * time.Second)
	defer limit.Stop()
	for started := false; !started; {
		sum, changed := a.State.Summarize()
		if started = sum.Unstarted == 0; started {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-limit.C:
			started = true
		case <-changed:
		}
	}
	settle := time.NewTimer(time.Second)
	defer settle.Stop()
	select {
	case <-ctx.Done():
		return
	case <-settle.C:
	}
	// the start-up's garbage (the config's, the starts') goes back
	// to the system now rather than at the scavenger's pace
	debug.FreeOSMemory()
	n, err := Binary()
	if err != nil {
		a.Log.Debug("cannot give back the start-up pages", "err", err)
		return
	}
	a.Log.Debug("gave back the binary's start-up pages", "mapped_bytes", n)
}
