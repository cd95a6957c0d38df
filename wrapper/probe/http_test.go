package probe

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// countedServer is an httptest server that counts the connections it has
// accepted and those still open.
type countedServer struct {
	*httptest.Server
	accepted, open atomic.Int64
}

func newCountedServer(t *testing.T, tls bool, h http.HandlerFunc) *countedServer {
	t.Helper()
	s := &countedServer{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.accepted.Add(1)
			s.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.open.Add(-1)
		}
	}
	if tls {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

// checker builds the checker of a probe given in YAML, closed with the test.
func checker(t *testing.T, yaml string) Checker {
	t.Helper()
	p := parseProbe(t, yaml)
	c, err := New(p, &Target{Process: "p"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.(*httpCheck).Close() })
	return c
}

func checkOnce(t *testing.T, c Checker) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Check(ctx)
}

// Each way an answer can end is read to its end: the connection is kept
// when its framing says where the next answer starts, and dropped when not,
// and each check passes either way.
func TestHTTPAnswerFraming(t *testing.T) {
	noLeak(t)
	big := strings.Repeat("x", 3*bodyLimit)
	srv := newCountedServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/length":
			fmt.Fprint(w, "ok")
		case "/chunked":
			fmt.Fprint(w, "first part, ")
			w.(http.Flusher).Flush()
			fmt.Fprint(w, "all fine")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			fmt.Fprint(w, "after the hints")
		case "/close":
			w.Header().Set("Connection", "close")
			fmt.Fprint(w, "ok")
		case "/big":
			// longer than a check reads: the rest is never read, so the
			// connection cannot carry the next answer
			fmt.Fprint(w, big)
		case "/upgrade":
			// the connection now speaks another protocol: it is not kept
			conn, brw, _ := w.(http.Hijacker).Hijack()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: other\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			go func() { defer conn.Close(); io.Copy(io.Discard, brw) }()
		case "/unframed":
			// HTTP/1.0 style: the body ends with the connection
			conn, brw, _ := w.(http.Hijacker).Hijack()
			brw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall fine")
			brw.Flush()
			conn.Close()
		}
	})
	for _, tc := range []struct {
		path, extra string
		conns       int64 // for 3 checks
	}{
		{"/length", "", 1},
		{"/chunked", ", bodyMatch: 'all fine$'", 1},
		{"/empty", "", 1},
		{"/hints", ", bodyMatch: 'after the hints'", 1},
		{"/length", ", method: HEAD", 1},
		{"/close", "", 3},
		{"/big", ", bodyMatch: '^x+$'", 3},
		{"/unframed", ", bodyMatch: 'all fine'", 3},
		{"/upgrade", ", expectedStatus: '101'", 3},
	} {
		before := srv.accepted.Load()
		c := checker(t, fmt.Sprintf("http: {url: '%s%s'%s}", srv.URL, tc.path, tc.extra))
		for i := 0; i < 3; i++ {
			if err := checkOnce(t, c); err != nil {
				t.Errorf("%s%s: check %d: %v", tc.path, tc.extra, i+1, err)
			}
		}
		if got := srv.accepted.Load() - before; got != tc.conns {
			t.Errorf("%s%s: %d connections for 3 checks, want %d", tc.path, tc.extra, got, tc.conns)
		}
		c.(*httpCheck).Close()
	}
	waitfor.Condition(t, 5*time.Second, "every connection to close", func() bool { return srv.open.Load() == 0 })
}

// A kept connection that the server closed while it was idle (its
// keep-alive timeout) is not a failure: the check dials again.
func TestHTTPKeptConnectionClosedByTheServer(t *testing.T) {
	noLeak(t)
	srv := newCountedServer(t, false, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	c := checker(t, fmt.Sprintf("http: {url: '%s/'}", srv.URL))
	for i := 1; i <= 3; i++ {
		if err := checkOnce(t, c); err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
		if srv.accepted.Load() != int64(i) {
			t.Fatalf("check %d made %d connections", i, srv.accepted.Load())
		}
		srv.CloseClientConnections()
		waitfor.Condition(t, 5*time.Second, "the server to close its side", func() bool { return srv.open.Load() == 0 })
	}
}

// The request carries the configured headers, Host and the URL's user
// part as basic auth, as net/http's client sends them.
func TestHTTPRequest(t *testing.T) {
	got := make(chan *http.Request, 1)
	srv := newCountedServer(t, false, func(w http.ResponseWriter, r *http.Request) { got <- r })
	u := strings.Replace(srv.URL, "http://", "http://ann:s3cret@", 1)
	c := checker(t, fmt.Sprintf("http: {url: '%s/ready?deep=1', method: post, headers: {X-Probe: 'yes', Host: app.example}}", u))
	if err := checkOnce(t, c); err != nil {
		t.Fatal(err)
	}
	r := <-got
	user, pass, _ := r.BasicAuth()
	if r.Method != "POST" || r.URL.RequestURI() != "/ready?deep=1" || r.Host != "app.example" || r.Header.Get("X-Probe") != "yes" ||
		user != "ann" || pass != "s3cret" || r.UserAgent() != "process-wrapper-probe" {
		t.Errorf("request %s %s host %q headers %v", r.Method, r.URL, r.Host, r.Header)
	}
}

// https: the server's certificate is verified unless the config says not
// to.
func TestHTTPS(t *testing.T) {
	noLeak(t)
	srv := newCountedServer(t, true, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	wantErr(t, checkOnce(t, checker(t, fmt.Sprintf("http: {url: '%s/'}", srv.URL))), "certificate")
	c := checker(t, fmt.Sprintf("http: {url: '%s/', insecureSkipVerify: true}", srv.URL))
	for i := 0; i < 3; i++ {
		wantErr(t, checkOnce(t, c), "")
	}
	if n := srv.accepted.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the refused one and one kept for 3 checks)", n)
	}
}

// What is not an HTTP answer is a failure that says so in a short reason,
// and the check after it starts on a new connection. A head that never
// ends is cut at headLimit.
func TestHTTPNotAnAnswer(t *testing.T) {
	noLeak(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				if r.URL.Path == "/ssh" {
					fmt.Fprint(conn, "SSH-2.0-OpenSSH_9.6\r\n")
					return
				}
				// a header line without end, until the client goes
				line := []byte(strings.Repeat("x", 4096))
				fmt.Fprint(conn, "HTTP/1.1 200 OK\r\nX-Endless: ")
				for {
					if _, err := conn.Write(line); err != nil {
						return
					}
				}
			}()
		}
	}()
	for path, want := range map[string]string{"/ssh": `malformed HTTP response "SSH-2.0-OpenSSH_9.6"`, "/endless": "head is longer than 64 KiB"} {
		c := checker(t, fmt.Sprintf("http: {url: 'http://%s%s'}", ln.Addr(), path))
		for i := 0; i < 2; i++ {
			err := checkOnce(t, c)
			wantErr(t, err, want)
			if err != nil && len(err.Error()) > 2*excerptLimit {
				t.Errorf("a reason of %d bytes: %.100s...", len(err.Error()), err)
			}
		}
	}
}

// A check cancelled with the wrapper's stop returns at once, not at the
// probe's timeout.
func TestHTTPCancelled(t *testing.T) {
	noLeak(t)
	srv := newCountedServer(t, false, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	c := checker(t, fmt.Sprintf("http: {url: '%s/'}\ntimeoutSeconds: 60", srv.URL))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Check(ctx) }()
	waitfor.Condition(t, 5*time.Second, "the request to arrive", func() bool { return srv.open.Load() == 1 })
	cancel()
	select {
	case err := <-done:
		wantErr(t, err, "context canceled")
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled check did not return")
	}
}
