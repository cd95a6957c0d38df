package probe

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
	"github.com/process-wrapper/process-wrapper/wrapper/config"
	"github.com/process-wrapper/process-wrapper/wrapper/reaper"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// parseProbe builds a config.Probe from YAML, through the real loader.
func parseProbe(t *testing.T, yaml string) *config.Probe {
	t.Helper()
	procs, err := config.Parse("t.yaml", []byte("- name: p\n  entrypoint: x\n  readiness:\n    "+strings.ReplaceAll(yaml, "\n", "\n    ")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	return procs[0].Readiness
}

func check(t *testing.T, yaml string, target *Target) error {
	t.Helper()
	p := parseProbe(t, yaml)
	if target == nil {
		target = &Target{Process: "p", Environ: os.Environ}
	}
	c, err := New(p, target)
	if err != nil {
		t.Fatal(err)
	}
	return run(context.Background(), c, p)
}

func wantErr(t *testing.T, err error, substr string) {
	t.Helper()
	if substr == "" {
		if err != nil {
			t.Errorf("unhealthy: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), substr) {
		t.Errorf("error %v, want one containing %q", err, substr)
	}
}

// noLeak fails the test when goroutines stay behind the checks.
func noLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		if !waitfor.Poll(5*time.Second, func() bool { return runtime.NumGoroutine() <= before }) {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
	})
}

func TestTCP(t *testing.T) {
	noLeak(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	wantErr(t, check(t, fmt.Sprintf("tcp: {socket: %q}", ln.Addr()), nil), "")
	ln.Close()
	wantErr(t, check(t, fmt.Sprintf("tcp: {socket: %q}", ln.Addr()), nil), "connection refused")
}

func TestHTTP(t *testing.T) {
	noLeak(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			if r.Header.Get("X-Probe") != "yes" {
				w.WriteHeader(400)
			}
			fmt.Fprint(w, "all fine")
		case "/fail":
			w.WriteHeader(500)
			fmt.Fprint(w, "database down\nsecond line")
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	wantErr(t, check(t, fmt.Sprintf("httpGet: {port: %d, path: /ok, httpHeaders: [{name: X-Probe, value: 'yes'}]}", port), nil), "")
	wantErr(t, check(t, fmt.Sprintf("http: {url: '%s/ok', headers: {X-Probe: 'yes'}, bodyMatch: 'fine$'}", srv.URL), nil), "")
	wantErr(t, check(t, fmt.Sprintf("http: {url: '%s/ok', headers: {X-Probe: 'yes'}, bodyMatch: 'broken'}", srv.URL), nil), `body does not match "broken": "all fine"`)
	wantErr(t, check(t, fmt.Sprintf("http: {url: '%s/fail'}", srv.URL), nil), `status 500 (want 200-399): "database down second line"`)
	wantErr(t, check(t, fmt.Sprintf("http: {url: '%s/fail', expectedStatus: '500'}", srv.URL), nil), "")
	wantErr(t, check(t, fmt.Sprintf("http: {url: '%s/redirect'}", srv.URL), nil), "")
	wantErr(t, check(t, fmt.Sprintf("http: {url: '%s/redirect', expectedStatus: 200-299}", srv.URL), nil), "status 302")
	wantErr(t, check(t, fmt.Sprintf("http: {url: '%s/slow'}\ntimeoutSeconds: 1", srv.URL), nil), "timed out after 1s")
	// the password of a URL never shows in a reason
	u := strings.Replace(srv.URL, "http://", "http://user:s3cret@", 1)
	err := check(t, fmt.Sprintf("http: {url: '%s/fail'}", u), nil)
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "user:xxxxx@") {
		t.Errorf("reason %v", err)
	}
	srv.Close()
	wantErr(t, check(t, fmt.Sprintf("http: {url: '%s/ok'}", srv.URL), nil), "connection refused")
}

func TestExec(t *testing.T) {
	if _, err := reaper.BecomeSubreaper(); err != nil {
		t.Fatal(err)
	}
	r := reaper.New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	target := &Target{Process: "p", Reaper: r, Environ: func() []string { return []string{"PATH=/usr/bin:/bin", "GREETING=hello"} }}
	noLeak(t)

	wantErr(t, check(t, `exec: {command: [sh, -c, 'test "$GREETING" = hello']}`, target), "")
	wantErr(t, check(t, `exec: {command: [sh, -c, 'echo not ready: queue empty; exit 3']}`, target), `exit code 3: "not ready: queue empty"`)
	wantErr(t, check(t, `exec: {command: [no-such-command-here]}`, target), "not found")
	// at the timeout the whole group is killed, grandchildren included
	pidFile := filepath.Join(t.TempDir(), "pid")
	wantErr(t, check(t, fmt.Sprintf("exec: {command: [sh, -c, 'sleep 30 & echo $! > %s; wait']}\ntimeoutSeconds: 1", pidFile), target), "timed out after 1s")
	b, _ := os.ReadFile(pidFile)
	var pid int
	fmt.Sscan(string(b), &pid)
	waitfor.Condition(t, 5*time.Second, "the exec probe's grandchild to be gone", func() bool {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return pid > 0 && (err != nil || strings.Contains(string(st), ") Z "))
	})
}

func TestFileEnvHeartBeat(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "ready")
	wantErr(t, check(t, fmt.Sprintf("file: {path: %q}", f), nil), "no such file")
	os.WriteFile(f, nil, 0o644)
	wantErr(t, check(t, fmt.Sprintf("file: {path: %q}", f), nil), "")
	wantErr(t, check(t, fmt.Sprintf("file: {path: %q, nonEmpty: true}", f), nil), "is empty")
	old := time.Now().Add(-time.Hour)
	os.Chtimes(f, old, old)
	wantErr(t, check(t, fmt.Sprintf("file: {path: %q, maxAge: 10m}", f), nil), "was modified 1h0m")

	env := &Target{Process: "p", Environ: func() []string { return []string{"TOKEN=s3cret", "EMPTY="} }}
	wantErr(t, check(t, "env: {name: TOKEN}", env), "")
	wantErr(t, check(t, "env: {name: EMPTY, value: ''}", env), "")
	wantErr(t, check(t, "env: {name: MISSING}", env), "MISSING is not set")
	err := check(t, "env: {name: TOKEN, value: other}", env)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("env mismatch: %v", err)
	}

	beats := NewBeats()
	hb := &Target{Process: "p", Beats: beats}
	p := parseProbe(t, "heartBeat: {maxAge: 100ms}")
	c, _ := New(p, hb)
	wantErr(t, c.Check(context.Background()), "no heartbeat yet")
	beats.Beat("p")
	wantErr(t, c.Check(context.Background()), "")
	waitfor.Condition(t, 5*time.Second, "the beat to go stale", func() bool {
		err := c.Check(context.Background())
		return err != nil && strings.Contains(err.Error(), "last heartbeat")
	})
	wantErr(t, check(t, fmt.Sprintf("heartBeat: {file: %q, maxAge: 10m}", f), nil), "last heartbeat 1h0m")
}

func TestGRPC(t *testing.T) {
	noLeak(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(ln)
	port := ln.Addr().(*net.TCPAddr).Port
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_NOT_SERVING)
	wantErr(t, check(t, fmt.Sprintf("grpc: {port: %d}", port), nil), "")
	wantErr(t, check(t, fmt.Sprintf("grpc: {port: %d, service: db}", port), nil), "NOT_SERVING")
	wantErr(t, check(t, fmt.Sprintf("grpc: {port: %d, service: nope}", port), nil), "grpc-status 5")
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_SERVING)
	wantErr(t, check(t, fmt.Sprintf("grpc: {port: %d, service: db}", port), nil), "")
	srv.Stop()
	wantErr(t, check(t, fmt.Sprintf("grpc: {port: %d}", port), nil), "connection refused")
}
