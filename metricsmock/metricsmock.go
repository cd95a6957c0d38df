// Package metricsmock is a stand-in for the UDP metrics server that
// process-wrapper sends its lifecycle events to: it validates and records
// every datagram, and serves what it received over HTTP so that tests and
// people can look at it.
package metricsmock

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/process-wrapper/process-wrapper/internal/lifecycle"
	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Event is one lifecycle event, the JSON object of one datagram.
type Event = lifecycle.Event

// Kinds are the event names the wrapper sends.
var Kinds = lifecycle.Kinds

// MaxDatagram is the largest event accepted; a larger datagram is malformed.
const MaxDatagram = lifecycle.MaxDatagram

// Decode validates one datagram strictly: one JSON object, known fields, a
// known event name and a time.
func Decode(b []byte) (Event, error) {
	var e Event
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, fmt.Errorf("json: %w", err)
	}
	if dec.More() {
		return e, errors.New("more than one JSON value")
	}
	if !Kinds[e.Event] {
		return e, fmt.Errorf("event %q is not a known event", e.Event)
	}
	if e.Time.IsZero() {
		return e, errors.New("time: required")
	}
	return e, nil
}

// Recorder keeps the last events received.
type Recorder struct {
	mu     sync.Mutex
	events []Event
	max    int

	log       *logline.Logger
	reg       *prometheus.Registry
	received  *prometheus.CounterVec
	malformed prometheus.Counter
}

// NewRecorder keeps at most max events.
func NewRecorder(max int, log *logline.Logger) *Recorder {
	r := &Recorder{max: max, log: log, reg: prometheus.NewRegistry(),
		received:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "metrics_mock_events_total", Help: "Valid events received, by event."}, []string{"event"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{Name: "metrics_mock_malformed_datagrams_total", Help: "Datagrams that were not a valid event."}),
	}
	r.reg.MustRegister(r.received, r.malformed)
	return r
}

// Take validates and records one datagram.
func (r *Recorder) Take(b []byte, from string) {
	e, err := Decode(b)
	if err != nil {
		r.malformed.Inc()
		snippet := string(b)
		if len(snippet) > 200 {
			snippet = snippet[:200] + "..."
		}
		r.log.Warn("malformed datagram", "from", from, "err", err, "datagram", snippet)
		return
	}
	r.received.WithLabelValues(e.Event).Inc()
	r.log.Info("event", "event", e.Event, "process", e.Process, "code", codeText(e.Code), "reason", e.Reason, "from", from)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	if len(r.events) > r.max {
		r.events = append(r.events[:0], r.events[len(r.events)-r.max:]...)
	}
}

func codeText(c *int) string {
	if c == nil {
		return ""
	}
	return fmt.Sprint(*c)
}

// Events returns the recorded events matching every non-empty filter.
func (r *Recorder) Events(event, process string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []Event{}
	for _, e := range r.events {
		if (event == "" || e.Event == event) && (process == "" || e.Process == process) {
			out = append(out, e)
		}
	}
	return out
}

// ServeUDP reads datagrams from conn until ctx ends.
func (r *Recorder) ServeUDP(ctx context.Context, conn net.PacketConn) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	buf := make([]byte, MaxDatagram+1)
	for {
		n, addr, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Warn("udp read", "err", err)
			continue
		}
		if n > MaxDatagram {
			r.malformed.Inc()
			r.log.Warn("malformed datagram", "from", addr.String(), "err", fmt.Sprintf("larger than %d bytes", MaxDatagram))
			continue
		}
		r.Take(buf[:n], addr.String())
	}
}

// Handler serves GET /events?event=&process= (JSON) and /metrics.
func (r *Recorder) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		for k := range q {
			if k != "event" && k != "process" {
				http.Error(w, "unknown filter "+k+" (event, process)", http.StatusBadRequest)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Events(strings.TrimSpace(q.Get("event")), strings.TrimSpace(q.Get("process"))))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	return mux
}
