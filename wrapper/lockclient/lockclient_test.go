package lockclient

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Renewals and releases name the grant by its fencing token too: the
// server uses a released lease again, and a late call about an ended grant
// must not touch the grant that uses the lease now. The server's answers
// map to what the supervisor acts on.
func TestRenewalsAndReleasesNameTheGrant(t *testing.T) {
	var got []map[string]any
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Errorf("%s: body %v", r.URL.Path, err)
		}
		body["path"] = r.URL.Path
		got = append(got, body)
		w.WriteHeader(status)
		w.Write([]byte(`{"error":"this grant has ended (its lease expired, or it was released): the lock is lost"}`))
	}))
	defer srv.Close()
	c := New(srv.URL)
	l := Lease{Name: "migration", Owner: "pod-a/migrate/1", Lease: "6a6ca21473c8e004", Token: 42}
	if err := c.KeepAlive(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	for i, path := range []string{"/v1/locks/migration/keepalive", "/v1/locks/migration/release"} {
		b := got[i]
		if b["path"] != path || b["owner"] != l.Owner || b["lease"] != l.Lease || b["token"] != float64(42) {
			t.Errorf("request %d: %v", i, b)
		}
	}
	status = http.StatusGone
	if err := c.KeepAlive(context.Background(), l); !errors.Is(err, ErrLost) {
		t.Errorf("keepalive answered 410: %v, want ErrLost", err)
	}
	if err := c.Release(context.Background(), l); err != nil {
		t.Errorf("release answered 410 (already gone): %v", err)
	}
}
