package sharedlock

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Only the acquire answer carries a grant's secret; a renewal or a release
// with a guessed secret, or with the secret of an earlier grant of the same
// lease, is refused and the holder keeps the lock; GET shows no lease,
// token or secret.
func TestGrantSecret(t *testing.T) {
	s := start(t, testConfig(t))
	_, a := s.acquire(t, "job", "a", 10, 0)
	if len(a.Secret) != 32 {
		t.Fatalf("secret %q: want 128 bits in hex", a.Secret)
	}
	guessed := a
	guessed.Secret = strings.Repeat("0", 32)
	for _, op := range []string{"keepalive", "release"} {
		if code := s.lease(t, op, "job", guessed); code != 403 {
			t.Errorf("%s with a guessed secret: %d, want 403", op, code)
		}
		if code := s.handle(t, op, guessed); code != 403 {
			t.Errorf("%s with a guessed secret and the token: %d, want 403", op, code)
		}
	}
	if h := s.holder(t, "job"); h.Owner != "a" || !h.Held {
		t.Fatalf("after the guesses the holder is %+v", h)
	}
	if code := s.lease(t, "keepalive", "job", a); code != 200 {
		t.Errorf("keepalive with the grant's secret: %d", code)
	}
	resp, err := http.Get(s.url + "/v1/locks/job")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, leak := range []string{`"lease"`, `"token"`, `"secret"`, a.Lease, a.Secret} {
		if bytes.Contains(body, []byte(leak)) {
			t.Errorf("GET shows %s: %s", leak, body)
		}
	}
	// the lease comes back in the next grant, to the same owner: the old
	// grant's secret does not touch the new one
	s.lease(t, "release", "job", a)
	_, b := s.acquire(t, "job", "a", 10, 0)
	if b.Lease != a.Lease {
		t.Fatalf("b got lease %s, want the pooled %s", b.Lease, a.Lease)
	}
	old := b
	old.Secret = a.Secret
	if code := s.lease(t, "release", "job", old); code != 403 && code != 410 {
		t.Errorf("release with the earlier grant's secret: %d, want 403 or 410", code)
	}
	if h := s.holder(t, "job"); !h.Held {
		t.Error("the earlier grant's secret released the current grant")
	}
}

// With SHARED_LEASE_TOKEN_FILE every /v1/ request needs the bearer token;
// /healthz and /metrics stay open. A token file that is empty is an error.
func TestBearerToken(t *testing.T) {
	cfg := testConfig(t)
	cfg.TokenFile = filepath.Join(t.TempDir(), "token")
	os.WriteFile(cfg.TokenFile, []byte("t0ken-of-the-test\n"), 0o600)
	s := start(t, cfg)
	call := func(auth string) int {
		req, _ := http.NewRequest("POST", s.url+"/v1/locks/t/acquire", strings.NewReader(`{"owner":"a","ttlSeconds":5}`))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for auth, want := range map[string]int{"": 401, "Bearer wrong": 401, "t0ken-of-the-test": 401, "Bearer t0ken-of-the-test": 200} {
		if code := call(auth); code != want {
			t.Errorf("Authorization %q: %d, want %d", auth, code, want)
		}
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get(s.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s without a token: %d, want 200", path, resp.StatusCode)
		}
	}
	empty := testConfig(t)
	empty.TokenFile = filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty.TokenFile, nil, 0o600)
	if _, err := New(empty, nil); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("an empty token file: %v", err)
	}
}
