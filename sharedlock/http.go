package sharedlock

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The HTTP API (JSON bodies):
//
//	POST /v1/locks/{name}/acquire    {"owner", "ttlSeconds", "waitSeconds"}  200 Grant | 409 held | 423 wait ended
//	POST /v1/locks/{name}/keepalive  {"owner", "lease", "secret", "token"}   200 {"ttlSeconds"} | 410 lost | 403 not holder
//	POST /v1/locks/{name}/release    {"owner", "lease", "secret", "token"}   200 | 410 already gone | 403 not holder
//	GET  /v1/locks/{name}                                                   200 Holder (no lease, token or secret)
//	GET  /healthz, GET /metrics                                             open, without the bearer token
//
// A bad name, owner, TTL, wait or body is a 400 whose error names the
// field. With a token (SHARED_LEASE_TOKEN_FILE), every /v1/ request needs
// "Authorization: Bearer <token>", or gets 401.

type acquireRequest struct {
	Owner       string `json:"owner"`
	TTLSeconds  int64  `json:"ttlSeconds"`
	WaitSeconds int64  `json:"waitSeconds"`
}

type leaseRequest struct {
	Owner string `json:"owner"`
	Lease string `json:"lease"`
	// Token, when given, is the grant's fencing token: the request is
	// then about that grant only (a lease is used again after a release).
	Token int64 `json:"token"`
	// Secret is the grant's, from the acquire answer: required.
	Secret string `json:"secret"`
}

type errorBody struct {
	Error  string  `json:"error"`
	Holder *Holder `json:"holder,omitempty"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Handler returns the HTTP API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/locks/{name}/acquire", s.authorized(s.acquire))
	mux.HandleFunc("POST /v1/locks/{name}/keepalive", s.authorized(s.keepAlive))
	mux.HandleFunc("POST /v1/locks/{name}/release", s.authorized(s.release))
	mux.HandleFunc("GET /v1/locks/{name}", s.authorized(s.inspect))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	return mux
}

// authorized requires the bearer token, when the server has one, compared
// in constant time.
func (s *Server) authorized(h http.HandlerFunc) http.HandlerFunc {
	if s.token == "" {
		return h
	}
	want := []byte("Bearer " + s.token)
	return func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shared-lock"`)
			fail(w, http.StatusUnauthorized, "a bearer token is required (Authorization: Bearer <the token of SHARED_LEASE_TOKEN_FILE>)")
			return
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, format string, a ...any) {
	writeJSON(w, code, errorBody{Error: fmt.Sprintf(format, a...)})
}

// decode reads a JSON body strictly: unknown fields and trailing data are errors.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "body: %v", err)
		return false
	}
	if dec.More() {
		fail(w, http.StatusBadRequest, "body: more than one JSON object")
		return false
	}
	return true
}

func (s *Server) name(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if !nameRE.MatchString(name) {
		fail(w, http.StatusBadRequest, "name %q: 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
		return "", false
	}
	return name, true
}

func validOwner(w http.ResponseWriter, owner string) bool {
	if owner == "" || len(owner) > 256 {
		fail(w, http.StatusBadRequest, "owner: required, at most 256 bytes")
		return false
	}
	for _, c := range owner {
		if c < ' ' || c == 0x7f {
			fail(w, http.StatusBadRequest, "owner: no control characters")
			return false
		}
	}
	return true
}

func (s *Server) acquire(w http.ResponseWriter, r *http.Request) {
	name, ok := s.name(w, r)
	if !ok {
		return
	}
	var req acquireRequest
	if !decode(w, r, &req) || !validOwner(w, req.Owner) {
		return
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	if ttl < s.cfg.MinTTL || ttl > s.cfg.MaxTTL {
		fail(w, http.StatusBadRequest, "ttlSeconds: %d is outside %d..%d", req.TTLSeconds, int64(s.cfg.MinTTL/time.Second), int64(s.cfg.MaxTTL/time.Second))
		return
	}
	wait := time.Duration(req.WaitSeconds) * time.Second
	if req.WaitSeconds < 0 || wait > s.cfg.MaxWait {
		fail(w, http.StatusBadRequest, "waitSeconds: %d is outside 0 (try once)..%d", req.WaitSeconds, int64(s.cfg.MaxWait/time.Second))
		return
	}
	g, h, err := s.locks.acquire(r.Context(), name, req.Owner, ttl, wait)
	switch {
	case err == nil:
		s.log.Info("lock acquired", "lock", name, "owner", req.Owner, "lease", g.Lease, "token", g.Token)
		writeJSON(w, http.StatusOK, g)
	case errors.Is(err, ErrHeld):
		writeJSON(w, http.StatusConflict, errorBody{Error: err.Error(), Holder: &h})
	case errors.Is(err, ErrWaited):
		writeJSON(w, http.StatusLocked, errorBody{Error: err.Error(), Holder: &h})
	case errors.Is(err, ErrGone):
		s.log.Info("client left during acquire: its place was removed", "lock", name, "owner", req.Owner)
	default:
		s.log.Error("acquire failed", "lock", name, "owner", req.Owner, "err", err)
		fail(w, http.StatusServiceUnavailable, "%v", err)
	}
}

func (s *Server) leaseOp(w http.ResponseWriter, r *http.Request, op func(ctx context.Context, name string, req leaseRequest) (any, error)) {
	name, ok := s.name(w, r)
	if !ok {
		return
	}
	var req leaseRequest
	if !decode(w, r, &req) || !validOwner(w, req.Owner) {
		return
	}
	if _, err := parseLease(req.Lease); err != nil {
		fail(w, http.StatusBadRequest, "lease: %v", err)
		return
	}
	if req.Token < 0 {
		fail(w, http.StatusBadRequest, "token: %d is not a fencing token", req.Token)
		return
	}
	if req.Secret == "" {
		fail(w, http.StatusBadRequest, "secret: required (the acquire answer's)")
		return
	}
	res, err := op(r.Context(), name, req)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, res)
	case errors.Is(err, ErrExpired):
		fail(w, http.StatusGone, "%v", err)
	case errors.Is(err, ErrNotHolder), errors.Is(err, ErrBadSecret):
		fail(w, http.StatusForbidden, "%v", err)
	default:
		fail(w, http.StatusServiceUnavailable, "%v", err)
	}
}

func (s *Server) keepAlive(w http.ResponseWriter, r *http.Request) {
	s.leaseOp(w, r, func(ctx context.Context, name string, req leaseRequest) (any, error) {
		ttl, err := s.locks.keepAlive(ctx, name, req.Owner, req.Lease, req.Secret, req.Token)
		return map[string]int64{"ttlSeconds": ttl}, err
	})
}

func (s *Server) release(w http.ResponseWriter, r *http.Request) {
	s.leaseOp(w, r, func(ctx context.Context, name string, req leaseRequest) (any, error) {
		err := s.locks.release(ctx, name, req.Owner, req.Lease, req.Secret, req.Token)
		if err == nil {
			s.log.Info("lock released", "lock", name, "owner", req.Owner, "lease", req.Lease)
		}
		return map[string]bool{"released": err == nil}, err
	})
}

func (s *Server) inspect(w http.ResponseWriter, r *http.Request) {
	name, ok := s.name(w, r)
	if !ok {
		return
	}
	h, err := s.locks.inspect(r.Context(), name)
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.cli.Get(ctx, s.cfg.Prefix+"healthz"); err != nil {
		s.metrics.etcdErrors.Inc()
		fail(w, http.StatusServiceUnavailable, "etcd: %v", err)
		return
	}
	w.Write([]byte("ok\n"))
}
