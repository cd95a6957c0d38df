// Package profile sends continuous profiles of the wrapper itself to a
// Pyroscope server (-pyroscope-url) with the Pyroscope Go client.
package profile

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/grafana/pyroscope-go"
	"github.com/process-wrapper/process-wrapper/internal/logline"
)

// Profiler sends the wrapper's profiles until its Run's ctx ends.
type Profiler struct {
	p   *pyroscope.Profiler
	log *logline.Logger
}

// Start starts profiling to the server at rawURL (credentials in the URL's
// user part become basic auth).
func Start(rawURL string, log *logline.Logger) (*Profiler, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-pyroscope-url: want an http(s) URL of the Pyroscope server, got %q", rawURL)
	}
	cfg := pyroscope.Config{
		ApplicationName: "process-wrapper",
		Logger:          logger{log},
		Tags:            map[string]string{},
	}
	if u.User != nil {
		cfg.BasicAuthUser = u.User.Username()
		cfg.BasicAuthPassword, _ = u.User.Password()
		u.User = nil
	}
	cfg.ServerAddress = u.String()
	for tag, env := range map[string]string{"pod": "HOSTNAME", "namespace": "POD_NAMESPACE", "node": "NODE_NAME"} {
		if v := os.Getenv(env); v != "" {
			cfg.Tags[tag] = v
		}
	}
	p, err := pyroscope.Start(cfg)
	if err != nil {
		return nil, fmt.Errorf("pyroscope: %w", err)
	}
	log.Info("profiling to pyroscope", "url", cfg.ServerAddress)
	return &Profiler{p: p, log: log}, nil
}

// Run profiles until ctx ends, then uploads what was collected since the
// last upload (for at most stopTimeout).
func (pr *Profiler) Run(ctx context.Context) {
	<-ctx.Done()
	// the last upload, bounded: a server that is down must not hold
	// the wrapper's exit (kubelet's grace period is running)
	done := make(chan struct{})
	go func() { _ = pr.p.Stop(); close(done) }()
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		pr.log.Warn("pyroscope: the last upload did not end in time; exiting without it", "timeout", stopTimeout.String())
	}
}

// stopTimeout bounds the last upload at exit.
const stopTimeout = 2 * time.Second

// logger puts the client's messages in the wrapper's log; its chatter
// (every upload) is debug.
type logger struct{ l *logline.Logger }

func (g logger) Infof(f string, a ...any)  { g.l.Debug("pyroscope: " + fmt.Sprintf(f, a...)) }
func (g logger) Debugf(f string, a ...any) { g.l.Debug("pyroscope: " + fmt.Sprintf(f, a...)) }
func (g logger) Errorf(f string, a ...any) { g.l.Warn("pyroscope: " + fmt.Sprintf(f, a...)) }
