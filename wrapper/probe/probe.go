// Package probe holds the health checks of processes: one file per check
// kind behind the Checker interface and a registry from kind name to
// constructor (as blackbox_exporter's probers), and kubelet's timing rules
// (initial delay, period, timeout, success and failure thresholds), handled
// once in Worker, outside the kinds.
package probe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
	"github.com/process-wrapper/process-wrapper/wrapper/reaper"
)

// Checker runs one check. It returns nil when healthy, or an error whose text
// is the reason shown in the endpoints' bodies and in logs (secrets redacted).
// Check must return by ctx's deadline and leave nothing running.
type Checker interface {
	Check(ctx context.Context) error
}

// Target is what a check may need of the process it watches.
type Target struct {
	Process string
	// Environ returns the environment of the process's current run.
	Environ func() []string
	// Reaper starts exec checks, so that their exit status is not reaped
	// as an orphan's.
	Reaper *reaper.Reaper
	// Beats records heartbeats (heartBeat checks without a file).
	Beats *Beats
	// AMQP holds the AMQP_PROBE_RABBITMQ_* settings of the wrapper.
	AMQP AMQPDefaults
}

type constructor func(p *config.Probe, t *Target) (Checker, error)

// kinds is the registry: one entry per check kind of config.Probe.
var kinds = map[string]constructor{
	"http":        newHTTP,
	"tcp":         newTCP,
	"exec":        newExec,
	"grpc":        newGRPC,
	"file":        newFile,
	"env":         newEnv,
	"sql":         newSQL,
	"amqp":        newAMQP,
	"heartBeat":   newHeartBeat,
	"floatingPid": newFloatingPid,
}

// New builds the checker of probe p for target t.
func New(p *config.Probe, t *Target) (Checker, error) {
	c, ok := kinds[p.Kind]
	if !ok {
		return nil, fmt.Errorf("probe kind %q is not available", p.Kind)
	}
	return c(p, t)
}

// ErrTimeout is the reason of a check that did not answer within its timeout.
var ErrTimeout = errors.New("timed out")

// run calls c with the probe's timeout and turns a deadline into ErrTimeout.
// A check can fail on its own socket deadline (set from the context's) just
// before the context's timer fires: that is the timeout too.
func run(ctx context.Context, c Checker, p *config.Probe) error {
	cctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	err := c.Check(cctx)
	if err == nil || ctx.Err() != nil {
		return err
	}
	deadline, _ := cctx.Deadline()
	var t interface{ Timeout() bool }
	if cctx.Err() != nil || !time.Now().Before(deadline) || (errors.As(err, &t) && t.Timeout()) {
		return fmt.Errorf("%w after %s: %v", ErrTimeout, p.Timeout, err)
	}
	return err
}
