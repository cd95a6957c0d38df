// Package lockclient is the wrapper's client of the shared-lock server: it
// takes a process's lock before a run, renews it, and gives it back.
package lockclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Lease is a lock held.
type Lease struct {
	Name       string `json:"name"`
	Owner      string `json:"owner"`
	Lease      string `json:"lease"`
	Token      int64  `json:"token"`
	TTLSeconds int64  `json:"ttlSeconds"`
	// Secret is the grant's, from the acquire answer: renewals and the
	// release need it.
	Secret string `json:"secret"`
	// Renewed is when the last renewal that succeeded was sent: the lease
	// lasts at least its TTL from then (set by the caller).
	Renewed time.Time `json:"-"`
}

// ErrLost means the server no longer knows the lease: the lock is lost and
// another holder may already run.
var ErrLost = errors.New("the shared lock is lost")

// Client talks to one shared-lock server.
type Client struct {
	Base  string // -shared-lock-url
	Token string // -shared-lock-token-file's: sent as a bearer token when set
	HTTP  *http.Client
}

// New returns a client of the server at base.
func New(base string) *Client {
	return &Client{Base: base, HTTP: &http.Client{Timeout: 0}}
}

type holderInfo struct {
	Owner string `json:"owner"`
}

type errorBody struct {
	Error  string      `json:"error"`
	Holder *holderInfo `json:"holder"`
}

// Held is the answer of an acquire that is still waiting: who holds it.
type Held struct{ Holder string }

func (h *Held) Error() string { return "held by " + h.Holder }

func (c *Client) post(ctx context.Context, path string, body any, out any) (int, errorBody, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+path, bytes.NewReader(b))
	if err != nil {
		return 0, errorBody{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, errorBody{}, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		if out != nil {
			if err := json.Unmarshal(data, out); err != nil {
				return resp.StatusCode, errorBody{}, fmt.Errorf("answer: %w", err)
			}
		}
		return resp.StatusCode, errorBody{}, nil
	}
	var e errorBody
	_ = json.Unmarshal(data, &e)
	return resp.StatusCode, e, nil
}

// TryAcquire waits up to wait for the lock. It returns a *Held error when
// someone else still holds it at the end of the wait.
func (c *Client) TryAcquire(ctx context.Context, name, owner string, ttl, wait time.Duration) (Lease, error) {
	var l Lease
	code, e, err := c.post(ctx, "/v1/locks/"+name+"/acquire", map[string]any{
		"owner": owner, "ttlSeconds": int64(ttl / time.Second), "waitSeconds": int64(wait / time.Second),
	}, &l)
	switch {
	case err != nil:
		return l, err
	case code == http.StatusOK:
		return l, nil
	case code == http.StatusConflict || code == http.StatusLocked:
		h := &Held{}
		if e.Holder != nil {
			h.Holder = e.Holder.Owner
		}
		return l, h
	}
	return l, fmt.Errorf("acquire %s: status %d: %s", name, code, e.Error)
}

// handle names the grant in a renewal or a release. The token makes a late
// call about an ended grant harmless: the server uses a released lease
// again, possibly for the same owner.
func (l Lease) handle() any {
	return struct {
		Owner  string `json:"owner"`
		Lease  string `json:"lease"`
		Token  int64  `json:"token"`
		Secret string `json:"secret"`
	}{l.Owner, l.Lease, l.Token, l.Secret}
}

// KeepAlive renews the lease once.
func (c *Client) KeepAlive(ctx context.Context, l Lease) error {
	code, e, err := c.post(ctx, "/v1/locks/"+l.Name+"/keepalive", l.handle(), nil)
	switch {
	case err != nil:
		return err
	case code == http.StatusOK:
		return nil
	case code == http.StatusGone || code == http.StatusForbidden:
		return fmt.Errorf("%w: %s", ErrLost, e.Error)
	}
	return fmt.Errorf("keepalive %s: status %d: %s", l.Name, code, e.Error)
}

// Release gives the lock back.
func (c *Client) Release(ctx context.Context, l Lease) error {
	code, e, err := c.post(ctx, "/v1/locks/"+l.Name+"/release", l.handle(), nil)
	switch {
	case err != nil:
		return err
	case code == http.StatusOK, code == http.StatusGone:
		return nil
	}
	return fmt.Errorf("release %s: status %d: %s", l.Name, code, e.Error)
}
