package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// lockServer starts the shared-lock binary with an embedded etcd on tmpfs.
func lockServer(t *testing.T, env ...string) (*exec.Cmd, string) {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "pw-lock-")
	if err != nil {
		dir = t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(lockBin, "-data-dir", filepath.Join(dir, "etcd"),
		"-etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), "-etcd-peer-url", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	cmd.Env = append(append(os.Environ(), "SHARED_LEASE_SOCKET="+addr, "SHARED_LEASE_ETCD_ENDPOINTS="), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	startServer(t, cmd, "http://"+addr+"/healthz", 30*time.Second)
	return cmd, "http://" + addr
}

// Three wrappers run a process under the same lock with holdUntil exit,
// through a server that requires a bearer token (each wrapper reads it
// from -shared-lock-token-file, and sends each grant's secret back): the
// runs never overlap, and a waiting one says so.
func TestSharedLockMakesRunsExclusive(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	os.WriteFile(token, []byte("s3cret-token\n"), 0o600)
	_, url := lockServer(t, "SHARED_LEASE_TOKEN_FILE="+token)
	if resp, err := http.Post(url+"/v1/locks/migration/acquire", "application/json", strings.NewReader(`{"owner":"x","ttlSeconds":5}`)); err != nil || resp.StatusCode != 401 {
		t.Fatalf("an acquire without the token: %v %v", resp, err)
	}
	journal := filepath.Join(t.TempDir(), "journal")
	cfg := config(t, fmt.Sprintf(`
- name: migrate
  entrypoint: sh
  args: [-c, 'echo "enter $(date +%%s%%N)" >> %[1]s; sleep 0.4; echo "leave $(date +%%s%%N)" >> %[1]s']
  restartPolicy: Never
  sharedLock: {name: migration, ttlSeconds: 5, holdUntil: exit}`, journal))
	var ws []*wrapper
	for i := 0; i < 3; i++ {
		ws = append(ws, start(t, cfg, opts{args: []string{"-shared-lock-url", url, "-shared-lock-token-file", token}}))
	}
	waited := false
	for _, w := range ws {
		if code := w.wait(30 * time.Second); code != 0 {
			t.Fatalf("exit code %d", code)
		}
		if len(w.find("msg", "waiting for shared lock", "process", "migrate")) > 0 {
			waited = true
		}
		w.waitLine(time.Second, "msg", "shared lock released", "process", "migrate")
	}
	if !waited {
		t.Error("no wrapper reported waiting for the lock")
	}
	b, _ := os.ReadFile(journal)
	type span struct{ enter, leave int64 }
	var spans []span
	var open int64
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		v, _ := strconv.ParseInt(f[1], 10, 64)
		if f[0] == "enter" {
			open = v
		} else {
			spans = append(spans, span{open, v})
		}
	}
	if len(spans) != 3 {
		t.Fatalf("journal %q", b)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].enter < spans[j].enter })
	for i := 1; i < len(spans); i++ {
		if spans[i].enter < spans[i-1].leave {
			t.Errorf("runs %d and %d overlap", i-1, i)
		}
	}
}

// The server goes away while a process holds the lock: the wrapper stops
// the process before the lease's TTL runs out.
func TestLockLostStopsTheProcess(t *testing.T) {
	server, url := lockServer(t)
	marks := t.TempDir()
	w := start(t, config(t, `
- name: holder
  entrypoint: sh
  args: [`+marker(t)+`]
  envs: {MARKS: `+marks+`/gone}
  restartPolicy: Never
  sharedLock: {name: lost, ttlSeconds: 4}
  lifecycle: {preStop: {exec: {command: [sh, -c, "echo lock gone; touch `+marks+`/gone"]}}}`), opts{args: []string{"-shared-lock-url", url}})
	w.waitLine(10*time.Second, "msg", "shared lock acquired", "process", "holder")
	w.waitLine(5*time.Second, "app", "holder", "msg", "trapping signals")
	killed := time.Now()
	server.Process.Kill()
	w.waitLine(10*time.Second, "msg", "shared lock lost: stopping process", "process", "holder")
	w.waitLine(10*time.Second, "msg", "process exited", "process", "holder")
	if took := time.Since(killed); took > 4*time.Second {
		t.Errorf("the process ran %v after the server went away: longer than the 4s TTL", took)
	}
	// its preStop ran first, inside the lease's time
	w.waitLine(5*time.Second, "app", "holder", "msg", "saw "+marks+"/gone")
	w.wait(10 * time.Second)
}

// standInLock runs a process that ignores SIGTERM under a lock granted by a
// shared-lock server the test plays: it answers the acquire after
// grantDelay, and each renewal as renew says (its number from 1, when it
// arrived, when the grant was answered). The lease's TTL starts when a
// request that starts it arrives, as a real server's could. Once renewals
// fail the wrapper must stop the process: it must be dead within the TTL of
// the last start, or a second holder could run beside it.
func standInLock(t *testing.T, grantDelay time.Duration, renew func(n int, now, granted time.Time) (ok bool, delay time.Duration)) {
	const ttl = 6 * time.Second
	var mu sync.Mutex
	var lastStart, granted time.Time
	renewals := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		switch {
		case strings.HasSuffix(r.URL.Path, "/acquire"):
			mu.Lock()
			lastStart = now
			mu.Unlock()
			time.Sleep(grantDelay) // an answer that is late on purpose
			fmt.Fprintf(w, `{"name":"slow","owner":"o","lease":"1","token":7,"ttlSeconds":%d}`, int(ttl.Seconds()))
			mu.Lock()
			granted = time.Now()
			mu.Unlock()
		case strings.HasSuffix(r.URL.Path, "/keepalive"):
			mu.Lock()
			renewals++
			ok, delay := renew(renewals, now, granted)
			if ok {
				lastStart = now
			}
			mu.Unlock()
			if !ok {
				http.Error(w, `{"error":"etcd: no leader"}`, http.StatusServiceUnavailable)
				return
			}
			time.Sleep(delay) // an answer that is late on purpose
			fmt.Fprintf(w, `{"ttlSeconds":%d}`, int(ttl.Seconds()))
		default:
			fmt.Fprint(w, `{}`)
		}
	}))
	defer srv.Close()
	w := start(t, config(t, `
- name: holder
  entrypoint: CHILD
  args: [ignore-term]
  restartPolicy: Never
  sharedLock: {name: slow, ttlSeconds: 6}`), opts{args: []string{"-shared-lock-url", srv.URL}})
	w.waitLine(15*time.Second, "msg", "shared lock lost: stopping process", "process", "holder")
	w.waitLine(10*time.Second, "msg", "process exited", "process", "holder")
	mu.Lock()
	began := lastStart
	mu.Unlock()
	if ended := time.Since(began); ended > ttl {
		t.Errorf("the process ended %v after the lease's TTL last started: after the TTL (%v)", ended.Round(time.Millisecond), ttl)
	}
	w.wait(10 * time.Second)
}

// A renewal answered late counts from when it was sent: the server may have
// renewed the lease as it arrived. The second renewal is answered 1.8 s
// late, then every renewal fails.
func TestSlowRenewalCountsFromItsSending(t *testing.T) {
	standInLock(t, 0, func(n int, _, _ time.Time) (bool, time.Duration) {
		switch n {
		case 1:
			return true, 0
		case 2:
			return true, 1800 * time.Millisecond
		}
		return false, 0
	})
}

// A grant answered late: the server started the lease's TTL before it
// answered, so the wrapper counts it from a renewal sent after the grant.
// The grant is answered 2 s late; renewals succeed for a second after it.
func TestSlowGrantCountsFromARenewal(t *testing.T) {
	standInLock(t, 2*time.Second, func(_ int, now, granted time.Time) (bool, time.Duration) {
		return now.Sub(granted) <= time.Second, 0
	})
}

// /readiness names the lock a process waits for.
func TestWaitingForTheLockShowsInReadiness(t *testing.T) {
	_, url := lockServer(t)
	cfg := config(t, `
- name: job
  entrypoint: CHILD
  args: [sleep]
  sharedLock: {name: busy, ttlSeconds: 5}`)
	first := start(t, cfg, opts{args: []string{"-shared-lock-url", url}})
	first.waitLine(10*time.Second, "msg", "shared lock acquired")
	second := start(t, cfg, opts{args: []string{"-shared-lock-url", url}})
	base := second.url()
	waitfor.Condition(t, 10*time.Second, "the wait in /readiness", func() bool {
		_, body := httpGet(t, base+"/readiness")
		return strings.Contains(body, "job: starting: waiting for shared lock busy (held by ")
	})
	first.signal(syscall.SIGTERM)
	first.wait(10 * time.Second)
	second.waitLine(15*time.Second, "msg", "shared lock acquired", "process", "job")
	second.signal(syscall.SIGTERM)
	second.wait(10 * time.Second)
}

func TestSharedLockFlag(t *testing.T) {
	// without the variable: a start error naming it
	out, err := exec.Command(wrapperBin, "-shared-lock", "-config", config(t, "- {name: a, entrypoint: CHILD, args: [sleep]}\n"),
		"-http-address", "127.0.0.1:0", "-readiness-file", filepath.Join(t.TempDir(), "s")).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "SHARED_LEASE_ETCD_ENDPOINTS") {
		t.Errorf("%v %s", err, out)
	}
	// with an external etcd (.ci/services): the server runs beside the processes
	etcd := os.Getenv("PW_TEST_ETCD_ENDPOINTS")
	if etcd == "" {
		t.Fatal("PW_TEST_ETCD_ENDPOINTS unset: the run's own etcd (make test starts it with .ci/services start)")
	}
	socket := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	w := start(t, config(t, `
- name: user
  entrypoint: CHILD
  args: [sleep]
  sharedLock: {name: flag-test, ttlSeconds: 5, holdUntil: started}`), opts{
		args: []string{"-shared-lock", "-shared-lock-url", "http://" + socket},
		env:  []string{"SHARED_LEASE_ETCD_ENDPOINTS=" + etcd, "SHARED_LEASE_SOCKET=" + socket}})
	w.waitLine(30*time.Second, "msg", "shared lock released", "process", "user")
	waitfor.Condition(t, 5*time.Second, "the shared-lock server's own log line", func() bool {
		for _, l := range w.find("app", "shared-lock") {
			if strings.Contains(l["msg"], `msg=serving`) || strings.Contains(l["msg"], `msg="serving"`) {
				return true
			}
		}
		return false
	})
	w.signal(syscall.SIGTERM)
	w.wait(15 * time.Second)
}

// The wrapper is injected into other images: it must not link etcd's
// server, gRPC or a Kubernetes client, and its static stripped binary, built
// as `make build` builds it, stays under 20 MiB.
func TestWrapperDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../../cmd/process-wrapper").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"go.etcd.io/", "google.golang.org/grpc", "k8s.io/"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("the wrapper links %s", dep)
			}
		}
	}
	bin := filepath.Join(t.TempDir(), "process-wrapper")
	make := exec.Command("make", "-s", "-C", "../..", "bin/process-wrapper", "BIN_OUT="+bin)
	if out, err := make.CombinedOutput(); err != nil {
		t.Fatalf("make: %v\n%s", err, out)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 20<<20 {
		t.Errorf("the wrapper binary is %.1f MiB, over its 20 MiB budget", float64(fi.Size())/(1<<20))
	}
	t.Logf("binary: %.1f MiB", float64(fi.Size())/(1<<20))
}
