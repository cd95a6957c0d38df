package metadatamock

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type answer struct {
	code       int
	body, etag string
	took       time.Duration
}

func get(t *testing.T, url string, header bool) answer {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if header {
		req.Header.Set("Metadata-Flavor", "Google")
	}
	began := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if header && resp.StatusCode == 200 && resp.Header.Get("Metadata-Flavor") != "Google" {
		t.Errorf("answer without the Metadata-Flavor header")
	}
	return answer{resp.StatusCode, string(b), resp.Header.Get("ETag"), time.Since(began)}
}

func post(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Post(url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestGCEBehaviour(t *testing.T) {
	s := New()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	u := srv.URL + PreemptedPath

	if a := get(t, u, false); a.code != 403 {
		t.Errorf("without the header: %d", a.code)
	}
	a := get(t, u, true)
	if a.code != 200 || a.body != "FALSE" || a.etag == "" {
		t.Fatalf("preempted: %+v", a)
	}
	if m := get(t, srv.URL+MaintenancePath, true); m.body != "NONE" {
		t.Errorf("maintenance: %+v", m)
	}
	// timeout_sec: the same value and ETag after the timeout
	b := get(t, u+"?wait_for_change=true&timeout_sec=1&last_etag="+a.etag, true)
	if b.body != "FALSE" || b.etag != a.etag || b.took < time.Second {
		t.Errorf("wait with timeout: %+v", b)
	}
	// a change releases the wait at once
	done := make(chan answer)
	go func() { done <- get(t, u+"?wait_for_change=true&last_etag="+a.etag, true) }()
	select {
	case c := <-done:
		t.Fatalf("answered before the change: %+v", c)
	case <-time.After(200 * time.Millisecond): // the request must be waiting
	}
	if code := post(t, srv.URL+"/control/preempt"); code != 200 {
		t.Fatal(code)
	}
	c := <-done
	if c.body != "TRUE" || c.etag == a.etag {
		t.Errorf("after the preemption: %+v", c)
	}
	// a last_etag that already differs answers at once
	if d := get(t, u+"?wait_for_change=true&last_etag="+a.etag, true); d.body != "TRUE" || d.took > time.Second {
		t.Errorf("stale last_etag: %+v", d)
	}
	if code := post(t, srv.URL+"/control/reset"); code != 200 || get(t, u, true).body != "FALSE" {
		t.Error("reset")
	}
	// scheduled preemption
	post(t, srv.URL+"/control/preempt?after=300ms")
	e := get(t, u+"?wait_for_change=true&timeout_sec=5", true)
	if e.body != "TRUE" || e.took > 3*time.Second {
		t.Errorf("scheduled preemption: %+v", e)
	}
	// bad requests
	if f := get(t, u+"?wait_for_change=true&timeout_sec=soon", true); f.code != 400 {
		t.Errorf("bad timeout_sec: %d", f.code)
	}
	if code := post(t, srv.URL+"/control/preempt?after=later"); code != 400 {
		t.Errorf("bad after: %d", code)
	}
	if code := post(t, srv.URL+"/control/maintenance?value=SOON"); code != 400 {
		t.Errorf("bad maintenance value: %d", code)
	}
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Metadata-Flavor", "Google")
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	if resp, _ := http.DefaultClient.Do(req); resp.StatusCode != 403 {
		t.Errorf("proxied request: %d", resp.StatusCode)
	}
	if st := get(t, srv.URL+"/control/state", false); !strings.Contains(st.body, `"preempted":"TRUE"`) {
		t.Errorf("state %s", st.body)
	}
}
