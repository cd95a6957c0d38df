// Package preempt watches the GCE metadata server for the preemption of the
// node (HANDLE_PREEMPTION=true) and drains envoy when it comes (-envoy-drain).
package preempt

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/wrapper/retry"
)

// DefaultMetadataURL is GCE's preempted value.
const DefaultMetadataURL = "http://metadata.google.internal/computeMetadata/v1/instance/preempted"

// DefaultEnvoyDrainURL drains envoy's inbound listeners only, gracefully:
// the application's own outbound calls through envoy keep working.
const DefaultEnvoyDrainURL = "http://localhost:15000/drain_listeners?inboundonly&graceful"

// Watcher follows the preempted value the way GCE documents it: a hanging
// GET with wait_for_change, last_etag so that no change is missed between
// two calls, and a bounded timeout_sec; backoff with jitter while the server
// is down or answers nonsense, logged once per change of that state.
type Watcher struct {
	URL         string
	Client      *http.Client
	Log         *logline.Logger
	TimeoutSec  int           // the hanging GET's bound; 60 when zero
	MaxBackoff  time.Duration // 30s when zero
	OnPreempted func()        // called once, when the value turns TRUE
}

// Run watches until the node is preempted or ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	timeout := w.TimeoutSec
	if timeout <= 0 {
		timeout = 60
	}
	maxBackoff := w.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 30 * time.Second
	}
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: time.Duration(timeout+10) * time.Second}
	}
	etag, failing := "", ""
	backoff := retry.Backoff{Initial: time.Second, Max: maxBackoff}
	for ctx.Err() == nil {
		value, newTag, err := w.ask(ctx, client, etag, timeout)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if err.Error() != failing {
				w.Log.Warn("metadata server: retrying with backoff", "url", w.URL, "err", err)
				failing = err.Error()
			}
			if !backoff.Wait(ctx) {
				return
			}
			continue
		}
		if failing != "" {
			w.Log.Info("metadata server answers again", "url", w.URL)
			failing = ""
		}
		backoff.Reset()
		etag = newTag
		if value == "TRUE" {
			w.Log.Warn("the node is preempted", "url", w.URL)
			w.OnPreempted()
			return
		}
	}
}

func (w *Watcher) ask(ctx context.Context, client *http.Client, etag string, timeout int) (string, string, error) {
	u, err := url.Parse(w.URL)
	if err != nil {
		return "", "", fmt.Errorf("METADATA_URL: %w", err)
	}
	q := u.Query()
	q.Set("wait_for_change", "true")
	q.Set("timeout_sec", fmt.Sprint(timeout))
	if etag != "" {
		q.Set("last_etag", etag)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Metadata-Flavor", "Google")
	resp, err := client.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("status %d", resp.StatusCode)
	}
	v := strings.TrimSpace(string(body))
	if v != "TRUE" && v != "FALSE" {
		return "", "", fmt.Errorf("unexpected value %q", v)
	}
	return v, resp.Header.Get("ETag"), nil
}

// DrainEnvoy POSTs to url until envoy answers 2xx or ctx ends (the
// shutdown began), with backoff.
func DrainEnvoy(ctx context.Context, drainURL string, log *logline.Logger) {
	client := &http.Client{Timeout: 5 * time.Second}
	backoff := 200 * time.Millisecond
	for try := 1; ; try++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, drainURL, nil)
		if err != nil {
			log.Error("envoy drain: bad ENVOY_DRAIN_URL", "err", err)
			return
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				log.Info("envoy drained", "url", drainURL, "tries", try)
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if try == 1 {
			log.Warn("envoy drain failed: retrying", "url", drainURL, "err", err)
		}
		select {
		case <-ctx.Done():
			log.Warn("envoy drain abandoned at shutdown", "url", drainURL, "tries", try)
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
