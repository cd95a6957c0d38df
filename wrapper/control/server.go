package control

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/wrapper/config"
	"github.com/process-wrapper/process-wrapper/wrapper/health"
	"github.com/process-wrapper/process-wrapper/wrapper/metrics"
	"github.com/process-wrapper/process-wrapper/wrapper/supervisor"
	"github.com/process-wrapper/process-wrapper/wrapper/tail"
)

// Ops are the supervisor's operations the API calls.
type Ops interface {
	Details() []supervisor.Detail
	Detail(name string) (supervisor.Detail, error)
	StopProcess(ctx context.Context, name string, dependents bool, by string) error
	StartProcess(ctx context.Context, name, by string) error
	RestartProcess(ctx context.Context, name, by string) error
	SignalProcess(name string, sig syscall.Signal, by string) error
	Lines(name string) (*tail.Tail, error)
}

// Server serves the API on its listeners until its Run's ctx ends.
type Server struct {
	Ops   Ops
	Usage func() map[string]metrics.Usage // what each tree uses; may be nil
	Log   *logline.Logger
	// Timeout bounds one action: the graceful-shutdown deadline (a stop's
	// own bound) and a margin
	Timeout time.Duration
	Token   string // required on the TCP listener

	listeners []listener
}

type listener struct {
	net.Listener
	tcp bool // needs the token; a unix socket checks the peer's uid
}

// Serve adds a listener: a unix socket from ListenUnix, or a TCP one,
// which needs Token.
func (s *Server) Serve(ln net.Listener, tcp bool) {
	s.listeners = append(s.listeners, listener{ln, tcp})
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) {
	done := make(chan struct{}, len(s.listeners))
	for _, ln := range s.listeners {
		// owned here: ctx's end ends it
		go func() {
			defer func() { done <- struct{}{} }()
			err := health.Serve(ctx, ln, s.handler(ln.tcp), func(srv *http.Server) {
				srv.ConnContext = peerContext
				// a followed log ends with the API
				srv.BaseContext = func(net.Listener) context.Context { return ctx }
			})
			if err != nil {
				s.Log.Error("control API stopped", "address", ln.Addr().String(), "err", err)
			}
		}()
	}
	for range s.listeners {
		<-done
	}
}

// handler is the API behind one listener.
func (s *Server) handler(tcp bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		by, err := s.caller(r, tcp)
		if err != nil {
			s.Log.Warn("control API: request refused", "path", r.URL.Path, "err", err)
			status := http.StatusForbidden
			if tcp {
				status = http.StatusUnauthorized
				w.Header().Set("WWW-Authenticate", `Bearer realm="process-wrapper"`)
			}
			fail(w, status, err.Error())
			return
		}
		s.route(w, r, by)
	})
}

// caller says who asks, or why they may not: on the socket, a peer whose
// uid is neither root nor the wrapper's; on TCP, a missing or wrong token.
func (s *Server) caller(r *http.Request, tcp bool) (string, error) {
	if tcp {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || got == "" {
			return "", errors.New("a bearer token is required (Authorization: Bearer <the -control-token-file's content>)")
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(s.Token)) != 1 {
			return "", errors.New("wrong bearer token")
		}
		return "token holder at " + r.RemoteAddr, nil
	}
	p, ok := r.Context().Value(peerKey{}).(peer)
	if !ok {
		return "", errors.New("the caller's credentials cannot be read")
	}
	if err := p.allowed(); err != nil {
		return "", err
	}
	return p.String(), nil
}

// route answers one request of an allowed caller.
func (s *Server) route(w http.ResponseWriter, r *http.Request, by string) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/processes")
	if !ok {
		fail(w, http.StatusNotFound, fmt.Sprintf("no such path %q: the API is under /v1/processes", r.URL.Path))
		return
	}
	parts := strings.Split(strings.TrimPrefix(rest, "/"), "/")
	if rest == "" || rest == "/" {
		parts = nil
	}
	switch len(parts) {
	case 0:
		if !method(w, r, http.MethodGet) || !noQuery(w, r) {
			return
		}
		s.list(w)
	case 1:
		if !method(w, r, http.MethodGet) || !noQuery(w, r) {
			return
		}
		s.show(w, parts[0])
	case 2:
		if parts[1] == "logs" {
			if method(w, r, http.MethodGet) {
				s.logs(w, r, parts[0])
			}
			return
		}
		if !method(w, r, http.MethodPost) {
			return
		}
		s.act(w, r, parts[0], parts[1], by)
	default:
		fail(w, http.StatusNotFound, fmt.Sprintf("no such path %q", r.URL.Path))
	}
}

func (s *Server) list(w http.ResponseWriter) { reply(w, http.StatusOK, list(s.Ops, s.Usage)) }

// list is every process as the API shows it.
func list(ops Ops, usage func() map[string]metrics.Usage) List {
	u := usageNow(usage)
	var out List
	for _, d := range ops.Details() {
		out.Processes = append(out.Processes, view(d, u))
	}
	return out
}

func (s *Server) show(w http.ResponseWriter, name string) {
	d, err := s.Ops.Detail(name)
	if err != nil {
		failErr(w, err)
		return
	}
	reply(w, http.StatusOK, view(d, usageNow(s.Usage)))
}

// act runs one action and answers with the process as it then is.
func (s *Server) act(w http.ResponseWriter, r *http.Request, name, action, by string) {
	ctx, cancel := context.WithTimeout(r.Context(), s.Timeout)
	defer cancel()
	q := r.URL.Query()
	var err error
	switch action {
	case "stop":
		dependents := false
		for k, v := range q {
			if k != "dependents" {
				fail(w, http.StatusBadRequest, fmt.Sprintf("unknown query parameter %q (stop takes dependents=true|false)", k))
				return
			}
			if dependents, err = strconv.ParseBool(v[len(v)-1]); err != nil {
				fail(w, http.StatusBadRequest, fmt.Sprintf("dependents=%q: want true or false", v[len(v)-1]))
				return
			}
		}
		if !noBody(w, r) {
			return
		}
		err = s.Ops.StopProcess(ctx, name, dependents, by)
	case "start", "restart":
		if !noQuery(w, r) || !noBody(w, r) {
			return
		}
		if action == "start" {
			err = s.Ops.StartProcess(ctx, name, by)
		} else {
			err = s.Ops.RestartProcess(ctx, name, by)
		}
	case "signal":
		if !noQuery(w, r) {
			return
		}
		var req SignalRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 4<<10))
		dec.DisallowUnknownFields()
		if derr := dec.Decode(&req); derr != nil {
			fail(w, http.StatusBadRequest, fmt.Sprintf("the body must be {\"signal\": \"SIGHUP\"}: %v", derr))
			return
		}
		sig, serr := config.ParseSignal(req.Signal)
		if serr != nil {
			fail(w, http.StatusBadRequest, "signal: "+serr.Error())
			return
		}
		if sig == syscall.SIGKILL || sig == syscall.SIGSTOP {
			// SIGKILL skips preStop and the leftovers' stop: stop does it right
			fail(w, http.StatusBadRequest, fmt.Sprintf("signal %s: use stop (preStop, the stop signal, then SIGKILL at the deadline)", config.SignalName(sig)))
			return
		}
		err = s.Ops.SignalProcess(name, sig, by)
	default:
		fail(w, http.StatusNotFound, fmt.Sprintf("no such action %q: stop, start, restart or signal", action))
		return
	}
	if err != nil {
		failErr(w, err)
		return
	}
	s.show(w, name)
}

// DefaultLines is how many of a process's last lines GET .../logs gives
// without ?lines.
const DefaultLines = 30

// logs answers a process's last lines as the wrapper wrote them, and with
// ?follow=true every line after them until the client goes away.
func (s *Server) logs(w http.ResponseWriter, r *http.Request, name string) {
	n, follow := DefaultLines, false
	for k, v := range r.URL.Query() {
		var err error
		switch k {
		case "lines":
			if n, err = strconv.Atoi(v[len(v)-1]); err != nil || n < 0 {
				fail(w, http.StatusBadRequest, fmt.Sprintf("lines=%q: want a number of lines, 0 or more", v[len(v)-1]))
				return
			}
		case "follow":
			if follow, err = strconv.ParseBool(v[len(v)-1]); err != nil {
				fail(w, http.StatusBadRequest, fmt.Sprintf("follow=%q: want true or false", v[len(v)-1]))
				return
			}
		default:
			fail(w, http.StatusBadRequest, fmt.Sprintf("unknown query parameter %q (logs takes lines=N and follow=true|false)", k))
			return
		}
	}
	lines, err := s.Ops.Lines(name)
	if err != nil {
		failErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !follow {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(lines.Last(n))
		return
	}
	past, f := lines.Follow(n)
	defer f.Stop()
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	_, _ = w.Write(past)
	if flusher != nil {
		flusher.Flush()
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-f.C:
			if d := f.Dropped(); d > 0 {
				fmt.Fprintf(w, "level=warn app=process-wrapper msg=\"ctl logs: %d writes of %s were lost here: this reader is slower than the process\"\n", d, name)
			}
			if _, err := w.Write(b); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

// usageNow is what each tree uses now, or nothing without usage.
func usageNow(usage func() map[string]metrics.Usage) map[string]metrics.Usage {
	if usage == nil {
		return nil
	}
	return usage()
}

// view is the API's object of one process.
func view(d supervisor.Detail, usage map[string]metrics.Usage) Process {
	p := Process{
		Name: d.Name, State: string(d.Phase), Reason: config.Redact(d.Reason), Pid: d.Pid, Run: d.Runs, Restarts: d.Restarts,
		Held: d.Held, Essential: d.Essential, Since: d.Since, Dependents: d.Dependents,
	}
	var why string
	p.Ready, why = d.Ready()
	p.NotReady = config.Redact(why)
	p.Live, _ = d.Live()
	if d.Phase == "running" {
		p.UptimeSeconds = time.Since(d.Since).Round(time.Millisecond).Seconds()
	}
	if !d.ExitedAt.IsZero() {
		p.LastExit = &Exit{Code: d.ExitCode, At: d.ExitedAt}
	}
	for _, pr := range d.Probes {
		p.Probes = append(p.Probes, Probe{Type: pr.Type, Kind: pr.Kind, OK: pr.OK, Checks: pr.Checks, Reason: config.Redact(pr.Reason), At: pr.At})
	}
	for _, e := range d.DependsOn {
		p.DependsOn = append(p.DependsOn, Edge{Name: e.Name, Condition: string(e.Condition), TimeoutSeconds: int(e.Timeout / time.Second), Met: e.Met})
	}
	if u, ok := usage[d.Name]; ok {
		p.CPUSeconds, p.MemoryBytes, p.Tree = u.CPUSeconds, u.RSSBytes, u.Processes
	}
	return p
}

func method(w http.ResponseWriter, r *http.Request, want string) bool {
	if r.Method == want {
		return true
	}
	w.Header().Set("Allow", want)
	fail(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: use %s", r.Method, r.URL.Path, want))
	return false
}

func noQuery(w http.ResponseWriter, r *http.Request) bool {
	for k := range r.URL.Query() {
		fail(w, http.StatusBadRequest, fmt.Sprintf("unknown query parameter %q", k))
		return false
	}
	return true
}

// noBody refuses a body where the action takes none.
func noBody(w http.ResponseWriter, r *http.Request) bool {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1))
	if len(b) > 0 {
		fail(w, http.StatusBadRequest, "this action takes no body")
		return false
	}
	return true
}

// failErr answers an operation's error with its status.
func failErr(w http.ResponseWriter, err error) {
	var conflict *supervisor.ConflictError
	switch {
	case errors.Is(err, supervisor.ErrUnknown):
		fail(w, http.StatusNotFound, err.Error())
	case errors.As(err, &conflict):
		fail(w, http.StatusConflict, err.Error())
	case errors.Is(err, supervisor.ErrShuttingDown):
		fail(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		fail(w, http.StatusGatewayTimeout, err.Error())
	default:
		fail(w, http.StatusInternalServerError, err.Error())
	}
}

func fail(w http.ResponseWriter, status int, msg string) {
	reply(w, status, Error{Error: msg})
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
