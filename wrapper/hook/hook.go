// Package hook runs the post-start hooks: once per wrapper start, when every
// process is ready for the first time, in config order. A hook that fails
// is retried with backoff (1s, 2s, ... 30s) until it succeeds; meanwhile
// /readiness answers 503 naming the hook and why, so kubelet keeps the pod
// out of service, and the readiness file is not written.
package hook

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/wrapper/config"
	"github.com/process-wrapper/process-wrapper/wrapper/events"
	"github.com/process-wrapper/process-wrapper/wrapper/reaper"
	"github.com/process-wrapper/process-wrapper/wrapper/state"
)

// Runner runs the hooks of a wrapper.
type Runner struct {
	Hooks   []config.Hook
	Reaper  *reaper.Reaper
	State   *state.Store
	Log     *logline.Logger
	Environ func(process string) []string // the environment of the process's current run
	Backoff [2]time.Duration              // initial and maximal delay between tries; zero: 1s, 30s
	// Observer hears each try (events.HookRun, Process = the hook's name); may be nil.
	Observer events.Observer
}

// Name identifies a hook in logs and bodies: app.postStart[0].
func Name(h *config.Hook) string { return fmt.Sprintf("%s.postStart[%d]", h.Process, h.Index) }

// Gate is the reason readiness is held back before the hooks ran.
const Gate = "post-start hooks have not run yet"

// Run waits until every process is ready, runs every hook until each has
// succeeded, then opens the readiness gate. It returns when done or when
// ctx ends (the wrapper is shutting down).
func (r *Runner) Run(ctx context.Context) {
	if len(r.Hooks) == 0 {
		return
	}
	if !r.waitProcessesReady(ctx) {
		return
	}
	initial, max := r.Backoff[0], r.Backoff[1]
	if initial == 0 {
		initial, max = time.Second, 30*time.Second
	}
	for i := range r.Hooks {
		h := &r.Hooks[i]
		delay := initial
		for try := 1; ; try++ {
			began := time.Now()
			err := r.runOnce(ctx, h)
			if ctx.Err() != nil {
				return
			}
			if r.Observer != nil {
				r.Observer.Observe(&events.Event{Kind: events.HookRun, Process: Name(h), OK: err == nil, Elapsed: time.Since(began), Reason: errString(err)})
			}
			if err == nil {
				r.Log.Info("post-start hook succeeded", "hook", Name(h), "tries", try, "took", time.Since(began).Round(time.Millisecond).String())
				break
			}
			r.Log.Error("post-start hook failed", "hook", Name(h), "try", try, "retry_in", delay.String(), "err", err)
			r.State.SetGate(fmt.Sprintf("post-start hook %s failed (try %d, next in %s): %v", Name(h), try, delay, err))
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			delay = min(2*delay, max)
		}
	}
	r.State.SetGate("")
}

// waitProcessesReady waits until every process is ready, the gate aside.
func (r *Runner) waitProcessesReady(ctx context.Context) bool {
	for {
		sum, changed := r.State.Summarize()
		if sum.Stopping {
			return false
		}
		if sum.NotReady == 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-changed:
		}
	}
}

func (r *Runner) runOnce(ctx context.Context, h *config.Hook) error {
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	if h.SQL != nil {
		return runSQL(ctx, h.SQL)
	}
	env := append([]string(nil), r.Environ(h.Process)...)
	for _, kv := range h.Env {
		env = append(env, kv.Key+"="+config.Expand(kv.Value, func(k string) (string, bool) { return config.LookupEnvOK(env, k) }))
	}
	path, err := config.LookPath(h.Command[0], config.LookupEnv(env, "PATH"), "")
	if err != nil {
		return err
	}
	e, out, err := r.Reaper.Exec(ctx, path, h.Command, env)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %s; output: %s", h.Timeout, oneLine(out))
	}
	if err != nil {
		return err
	}
	if e.Code() != 0 {
		return fmt.Errorf("%s; output: %s", e, oneLine(out))
	}
	return nil
}

func runSQL(ctx context.Context, h *config.SQLHook) error {
	conn, err := pgconn.Connect(ctx, h.DSN)
	if err != nil {
		return fmt.Errorf("connect %s: %s", config.Redact(h.DSN), config.Redact(err.Error()))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for i, stmt := range h.Statements {
		if _, err := conn.Exec(ctx, stmt).ReadAll(); err != nil {
			return fmt.Errorf("statement %d: %s", i, config.Redact(err.Error()))
		}
	}
	return nil
}

func oneLine(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	if s == "" {
		return "(none)"
	}
	return fmt.Sprintf("%q", s)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
