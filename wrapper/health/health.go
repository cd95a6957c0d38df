// Package health serves what kubelet and people ask the wrapper on :8111:
// /liveness and /readiness (with ?wait), and /heartbeat/<process> for
// heartBeat probes; it writes and removes the readiness file, and holds the
// -wait client.
package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/wrapper/probe"
	"github.com/process-wrapper/process-wrapper/wrapper/state"
)

// Server answers the health endpoints from the state store. Nothing it
// serves changes state, except heartbeats, which only loopback may send.
type Server struct {
	State        *state.Store
	Beats        *probe.Beats
	WaitDeadline time.Duration // how long ?wait waits
	Log          *logline.Logger
	// NotReady, when set, hears each 503 of /readiness (the metric
	// process_wrapper_readiness_failed_total).
	NotReady func()
	// MaxWaiters caps the requests held by ?wait at once (zero:
	// DefaultMaxWaiters); past it a request is answered at once, as
	// without ?wait, and WaitRefused hears it.
	MaxWaiters  int
	WaitRefused func()
	waiters     atomic.Int64

	mu    sync.Mutex
	cache [2]cached // per Kind: the answer for one state version
}

// cached is an answer computed once per state change, so that kubelet's
// polling costs no snapshot and no allocation while nothing changes.
type cached struct {
	version <-chan struct{}
	ok      bool
	body    []byte
}

// current answers kind for the state as it is now, and returns the channel
// closed at the next change.
func (s *Server) current(kind Kind) (bool, []byte, <-chan struct{}) {
	version := s.State.Changed()
	s.mu.Lock()
	c := s.cache[kind]
	s.mu.Unlock()
	if c.version == version && version != nil {
		return c.ok, c.body, version
	}
	view, version := s.State.Watch()
	ok, body := Report(kind, view)
	c = cached{version: version, ok: ok, body: []byte(body)}
	s.mu.Lock()
	s.cache[kind] = c
	s.mu.Unlock()
	return c.ok, c.body, version
}

// Handler returns the endpoints; mux is extended by other packages
// (/metrics, /prommerge) in later issues.
func (s *Server) Handler() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /liveness", func(w http.ResponseWriter, r *http.Request) { s.answer(w, r, Liveness) })
	mux.HandleFunc("GET /readiness", func(w http.ResponseWriter, r *http.Request) { s.answer(w, r, Readiness) })
	mux.HandleFunc("POST /heartbeat/{process}", s.heartbeat)
	return mux
}

// Kind is the question an endpoint answers.
type Kind int

// The two questions.
const (
	Liveness Kind = iota
	Readiness
)

// Report answers kind for a view of the state: whether it is 200, and the
// plain-text body that names each failing process and why.
func Report(kind Kind, v state.View) (bool, string) {
	var b strings.Builder
	ok := true
	if kind == Readiness && v.Stopping {
		ok = false
		b.WriteString("wrapper: shutting down\n")
	}
	if kind == Readiness && v.Preempted {
		ok = false
		b.WriteString("wrapper: preempted\n")
	}
	if kind == Readiness && v.Gate != "" && !v.Stopping {
		ok = false
		b.WriteString("wrapper: " + v.Gate + "\n")
	}
	for i := range v.Procs {
		p := &v.Procs[i]
		good, why := p.Live()
		if kind == Readiness {
			good, why = p.Ready()
		}
		if !good {
			ok = false
			b.WriteString(p.Name)
			b.WriteString(": ")
			b.WriteString(why)
			b.WriteByte('\n')
		}
	}
	if ok {
		return true, "ok\n"
	}
	return false, b.String()
}

// DefaultMaxWaiters is how many ?wait requests are held at once: the
// listener is on the pod network, and each held request costs PID 1 about
// 17 KiB (its connection, buffers and goroutine).
const DefaultMaxWaiters = 256

// hold reserves a place for a request that waits; false when all are taken.
func (s *Server) hold() bool {
	limit := int64(s.MaxWaiters)
	if limit <= 0 {
		limit = DefaultMaxWaiters
	}
	if s.waiters.Add(1) > limit {
		s.waiters.Add(-1)
		if s.WaitRefused != nil {
			s.WaitRefused()
		}
		return false
	}
	return true
}

func (s *Server) answer(w http.ResponseWriter, r *http.Request, kind Kind) {
	ok, body, changed := s.current(kind)
	if !ok && r.URL.Query().Has("wait") && !s.hold() {
		// refused: the connection is not kept either, or a flood of
		// refused waiters would stay as idle connections
		w.Header()["Connection"] = []string{"close"}
	} else if !ok && r.URL.Query().Has("wait") {
		defer s.waiters.Add(-1)
		deadline := time.NewTimer(s.WaitDeadline)
		defer deadline.Stop()
	wait:
		for !ok {
			select {
			case <-changed:
				ok, body, changed = s.current(kind)
			case <-deadline.C:
				break wait
			case <-r.Context().Done():
				return // the client went away
			}
		}
	}
	h := w.Header()
	h["Content-Type"] = plainText
	h["Cache-Control"] = noStore
	if !ok {
		if kind == Readiness && s.NotReady != nil {
			s.NotReady()
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write(body)
}

var (
	plainText = []string{"text/plain; charset=utf-8"}
	noStore   = []string{"no-store"}
)

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		http.Error(w, "heartbeats are accepted from loopback only", http.StatusForbidden)
		return
	}
	name := r.PathValue("process")
	if _, ok := s.State.Get(name); !ok {
		http.Error(w, "no process named "+name, http.StatusNotFound)
		return
	}
	s.Beats.Beat(name)
	w.WriteHeader(http.StatusNoContent)
}

// Listen binds addr now, so that a port in use is an error at start-up.
func Listen(addr string) (net.Listener, error) {
	// plain TCP: kubelet and Prometheus speak nothing else, and Go's
	// default (Multipath TCP where the kernel has it) costs a probe of the
	// kernel at every start
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-http-address: %w", err)
	}
	return ln, nil
}

// Endpoints serves Handler on Listener until its Run's ctx ends.
type Endpoints struct {
	Listener net.Listener
	Handler  http.Handler
	Log      *logline.Logger
}

// Run serves until ctx ends; a failure of the listener is logged.
func (e *Endpoints) Run(ctx context.Context) {
	if err := Serve(ctx, e.Listener, e.Handler); err != nil {
		e.Log.Error("health endpoints stopped", "err", err)
	}
}

// Serve serves h on ln until ctx ends; each of with changes the server
// first (the control API keeps its callers' credentials).
func Serve(ctx context.Context, ln net.Listener, h http.Handler, with ...func(*http.Server)) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	for _, f := range with {
		f(srv)
	}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	defer stop()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
