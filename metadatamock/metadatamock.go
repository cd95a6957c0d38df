// Package metadatamock is a stand-in for the GCE metadata server's instance
// preemption and maintenance values, with GCE's behaviour (the
// Metadata-Flavor header, ETags, wait_for_change with last_etag and
// timeout_sec) and a small control API to play a preemption locally.
package metadatamock

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The values served, as GCE names them.
const (
	PreemptedPath   = "/computeMetadata/v1/instance/preempted"
	MaintenancePath = "/computeMetadata/v1/instance/maintenance-event"
)

// Server holds the values and the waiters for their changes.
type Server struct {
	mu      sync.Mutex
	values  map[string]string // path -> value
	changed chan struct{}     // closed at each change
	timer   *time.Timer       // a scheduled preemption
	// MaxWait bounds a wait_for_change without timeout_sec (GCE holds
	// such a request for a long time; tests want a bound).
	MaxWait time.Duration
}

// New returns a server: not preempted, no maintenance event.
func New() *Server {
	return &Server{
		values:  map[string]string{PreemptedPath: "FALSE", MaintenancePath: "NONE"},
		changed: make(chan struct{}),
		MaxWait: 5 * time.Minute,
	}
}

func (s *Server) set(path, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values[path] == v {
		return
	}
	s.values[path] = v
	close(s.changed)
	s.changed = make(chan struct{})
}

// SetPreempted sets the preempted value (and cancels a scheduled preemption).
func (s *Server) SetPreempted(on bool) {
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.mu.Unlock()
	v := "FALSE"
	if on {
		v = "TRUE"
	}
	s.set(PreemptedPath, v)
}

// PreemptAfter schedules the preemption.
func (s *Server) PreemptAfter(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.timer = time.AfterFunc(d, func() { s.set(PreemptedPath, "TRUE") })
}

// SetMaintenance sets the maintenance-event value.
func (s *Server) SetMaintenance(v string) { s.set(MaintenancePath, v) }

func (s *Server) get(path string) (string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[path], s.changed
}

// ETag is the value's ETag: a hash of it, as GCE's is of the content.
func ETag(v string) string {
	h := fnv.New64a()
	h.Write([]byte(v))
	return fmt.Sprintf("%016x", h.Sum64())
}

// Handler serves the metadata paths and the control API:
//
//	POST /control/preempt            preempted = TRUE now
//	POST /control/preempt?after=30s  ... after a delay
//	POST /control/reset              preempted = FALSE, maintenance = NONE
//	POST /control/maintenance?value=TERMINATE_ON_HOST_MAINTENANCE
//	GET  /control/state              the values, as JSON
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, p := range []string{PreemptedPath, MaintenancePath} {
		mux.HandleFunc("GET "+p, func(w http.ResponseWriter, r *http.Request) { s.serveValue(w, r, p) })
	}
	mux.HandleFunc("POST /control/preempt", func(w http.ResponseWriter, r *http.Request) {
		if after := r.URL.Query().Get("after"); after != "" {
			d, err := time.ParseDuration(after)
			if err != nil || d < 0 {
				http.Error(w, "after: want a duration such as 30s", http.StatusBadRequest)
				return
			}
			s.PreemptAfter(d)
			fmt.Fprintf(w, "preemption in %s\n", d)
			return
		}
		s.SetPreempted(true)
		fmt.Fprintln(w, "preempted")
	})
	mux.HandleFunc("POST /control/reset", func(w http.ResponseWriter, r *http.Request) {
		s.SetPreempted(false)
		s.SetMaintenance("NONE")
		fmt.Fprintln(w, "reset")
	})
	mux.HandleFunc("POST /control/maintenance", func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query().Get("value")
		switch v {
		case "NONE", "MIGRATE_ON_HOST_MAINTENANCE", "TERMINATE_ON_HOST_MAINTENANCE":
			s.SetMaintenance(v)
			fmt.Fprintln(w, v)
		default:
			http.Error(w, "value: NONE, MIGRATE_ON_HOST_MAINTENANCE or TERMINATE_ON_HOST_MAINTENANCE", http.StatusBadRequest)
		}
	})
	mux.HandleFunc("GET /control/state", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		state := map[string]string{"preempted": s.values[PreemptedPath], "maintenanceEvent": s.values[MaintenancePath]}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(state)
	})
	return mux
}

func (s *Server) serveValue(w http.ResponseWriter, r *http.Request, path string) {
	// as GCE: the header is required, and proxied requests are refused
	if r.Header.Get("Metadata-Flavor") != "Google" || r.Header.Get("X-Forwarded-For") != "" {
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintln(w, "Missing Metadata-Flavor:Google header.")
		return
	}
	q := r.URL.Query()
	v, changed := s.get(path)
	if q.Get("wait_for_change") == "true" {
		wait := s.MaxWait
		if ts := q.Get("timeout_sec"); ts != "" {
			n, err := strconv.Atoi(ts)
			if err != nil || n <= 0 {
				http.Error(w, "timeout_sec: a positive number of seconds", http.StatusBadRequest)
				return
			}
			wait = min(wait, time.Duration(n)*time.Second)
		}
		// with last_etag, a value that already differs answers at once
		if last := q.Get("last_etag"); last == "" || last == ETag(v) {
			ctx, cancel := context.WithTimeout(r.Context(), wait)
			defer cancel()
			select {
			case <-changed:
				v, _ = s.get(path)
			case <-ctx.Done():
				if r.Context().Err() != nil {
					return // the client went away
				}
			}
		}
	}
	w.Header().Set("Metadata-Flavor", "Google")
	w.Header().Set("Content-Type", "application/text")
	w.Header().Set("ETag", ETag(v))
	fmt.Fprint(w, v)
}
