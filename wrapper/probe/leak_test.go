package probe

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

// silentListener returns a loopback address whose accept queue is full, so
// that a connection attempt hangs (its SYNs are dropped) until its timeout.
func silentListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// fill the queue: these connections are never accepted
	for i := 0; i < 4; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	return addr
}

func TestConnectTimeouts(t *testing.T) {
	noLeak(t)
	addr := silentListener(t)
	_, port, _ := net.SplitHostPort(addr)
	wantErr(t, check(t, fmt.Sprintf("tcp: {socket: %q}\ntimeoutSeconds: 1", addr), nil), "timed out after 1s")
	wantErr(t, check(t, fmt.Sprintf("grpc: {port: %s}\ntimeoutSeconds: 1", port), nil), "timed out after 1s")
	wantErr(t, check(t, fmt.Sprintf("httpGet: {port: %s}\ntimeoutSeconds: 1", port), nil), "timed out after 1s")
}

// The connection an http probe keeps between checks is closed when its
// worker stops (the process's run ended).
func TestHTTPKeptConnectionClosedWithTheRun(t *testing.T) {
	var open atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	defer srv.Close()
	p := &config.Probe{Kind: "http", Period: 10 * time.Millisecond, Timeout: time.Second, SuccessThreshold: 1, FailureThreshold: 1,
		Check: config.Check{HTTP: &config.HTTPCheck{URL: srv.URL, Method: "GET", StatusRanges: [][2]int{{200, 399}}}}}
	c, err := New(p, &Target{Process: "p"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	checks := 0
	done := make(chan struct{})
	go func() {
		(&Worker{Type: Readiness, Probe: p, Checker: c, Report: func(r Result) {
			checks++
			if checks == 5 {
				if open.Load() != 1 {
					t.Errorf("%d connections for 5 checks, want 1 kept", open.Load())
				}
				cancel()
			}
		}}).Run(ctx)
		close(done)
	}()
	<-done
	waitfor.Condition(t, 5*time.Second, "the kept connection to close", func() bool { return open.Load() == 0 })
}
