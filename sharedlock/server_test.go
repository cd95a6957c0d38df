package sharedlock

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/freeport"
	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// The tests run an embedded etcd whose data directory is on tmpfs
// (/dev/shm): no disk syncs slow them down, and nothing outlives the run.

// freePort is the port an embedded etcd listens on (see freeport).
func freePort(t testing.TB) int { return freeport.Loopback(t) }

func tmpfsDir(t testing.TB) string {
	base := "/dev/shm"
	if _, err := os.Stat(base); err != nil {
		base = ""
	}
	d, err := os.MkdirTemp(base, "shared-lock-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.DataDir = filepath.Join(tmpfsDir(t), "etcd")
	cfg.EmbeddedClientURL = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	cfg.EmbeddedPeerURL = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	cfg.EtcdLogLevel = "fatal" // etcd logs its own shutdown at error level
	return cfg
}

type testServer struct {
	*Server
	url string
	hs  *httptest.Server
}

func start(t testing.TB, cfg Config) *testServer {
	t.Helper()
	s, err := New(cfg, logline.NewLogger(logline.NewOutput(io.Discard), "shared-lock"))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	ts := &testServer{Server: s, url: hs.URL, hs: hs}
	t.Cleanup(func() { hs.Close(); s.Close() })
	return ts
}

func post(t testing.TB, ctx context.Context, url string, body any, out any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(b))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	io.Copy(io.Discard, resp.Body) // read to the end: the connection is reused, as a real client's
	return resp.StatusCode
}

func (s *testServer) acquire(t testing.TB, name, owner string, ttl, wait int64) (int, Grant) {
	var g Grant
	code := post(t, context.Background(), s.url+"/v1/locks/"+name+"/acquire", map[string]any{"owner": owner, "ttlSeconds": ttl, "waitSeconds": wait}, &g)
	return code, g
}

func (s *testServer) lease(t testing.TB, op, name string, g Grant) int {
	return post(t, context.Background(), s.url+"/v1/locks/"+name+"/"+op, map[string]any{"owner": g.Owner, "lease": g.Lease, "secret": g.Secret}, nil)
}

func (s *testServer) holder(t testing.TB, name string) Holder {
	resp, err := http.Get(s.url + "/v1/locks/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h Holder
	json.NewDecoder(resp.Body).Decode(&h)
	return h
}

// 50 clients take the same lock: no two hold it at once, and the fencing
// tokens grow with every holder.
func TestMutualExclusion(t *testing.T) {
	s := start(t, testConfig(t))
	type visit struct {
		enter, leave time.Time
		token        int64
	}
	var mu sync.Mutex
	var visits []visit
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, g := s.acquire(t, "exclusive", fmt.Sprintf("client-%d", i), 10, 120)
			if code != 200 {
				t.Errorf("client %d: acquire %d", i, code)
				return
			}
			v := visit{enter: time.Now(), token: g.Token}
			time.Sleep(2 * time.Millisecond) // the critical section's work
			v.leave = time.Now()
			mu.Lock()
			visits = append(visits, v)
			mu.Unlock()
			if code := s.lease(t, "release", "exclusive", g); code != 200 {
				t.Errorf("client %d: release %d", i, code)
			}
		}()
	}
	wg.Wait()
	if len(visits) != 50 {
		t.Fatalf("%d visits", len(visits))
	}
	sort.Slice(visits, func(i, j int) bool { return visits[i].enter.Before(visits[j].enter) })
	for i := 1; i < len(visits); i++ {
		if visits[i].enter.Before(visits[i-1].leave) {
			t.Errorf("holders %d and %d overlap", i-1, i)
		}
		if visits[i].token <= visits[i-1].token {
			t.Errorf("fencing token %d after %d", visits[i].token, visits[i-1].token)
		}
	}
}

func TestTryHeldAndWaitTimeout(t *testing.T) {
	s := start(t, testConfig(t))
	code, a := s.acquire(t, "job", "a", 10, 0)
	if code != 200 || a.Lease == "" || a.Token <= 0 || a.TTLSeconds != 10 {
		t.Fatalf("acquire %d %+v", code, a)
	}
	var e errorBody
	if code := post(t, context.Background(), s.url+"/v1/locks/job/acquire", map[string]any{"owner": "b", "ttlSeconds": 10}, &e); code != 409 || e.Holder == nil || e.Holder.Owner != "a" {
		t.Errorf("try on a held lock: %d %+v", code, e)
	}
	began := time.Now()
	if code := post(t, context.Background(), s.url+"/v1/locks/job/acquire", map[string]any{"owner": "b", "ttlSeconds": 10, "waitSeconds": 1}, &e); code != 423 || time.Since(began) < time.Second {
		t.Errorf("wait on a held lock: %d after %v", code, time.Since(began))
	}
	h := s.holder(t, "job")
	if !h.Held || h.Owner != "a" || h.Waiters != 0 {
		t.Errorf("holder %+v", h)
	}
	// only the holder may renew or release
	if code := s.lease(t, "keepalive", "job", Grant{Owner: "b", Lease: a.Lease, Secret: a.Secret}); code != 403 {
		t.Errorf("keepalive by another owner: %d", code)
	}
	if code := s.lease(t, "keepalive", "job", a); code != 200 {
		t.Errorf("keepalive: %d", code)
	}
	if code := s.lease(t, "release", "job", a); code != 200 {
		t.Errorf("release: %d", code)
	}
	if code := s.lease(t, "release", "job", a); code != 410 {
		t.Errorf("second release: %d", code)
	}
	if h := s.holder(t, "job"); h.Held {
		t.Errorf("held after release: %+v", h)
	}
}

// A holder that stops renewing loses the lock after its TTL: the server does
// not renew it by itself. The lock is free within TTL + 2 s.
func TestLockExpiresWithoutRenewals(t *testing.T) {
	s := start(t, testConfig(t))
	code, a := s.acquire(t, "ttl", "a", 3, 0)
	if code != 200 {
		t.Fatal(code)
	}
	began := time.Now()
	code, b := s.acquire(t, "ttl", "b", 3, 10)
	took := time.Since(began)
	if code != 200 || b.Token <= a.Token {
		t.Fatalf("waiter: %d %+v", code, b)
	}
	if took < 2*time.Second || took > 5*time.Second {
		t.Errorf("the lock was free after %v, want within TTL 3s + 2s", took)
	}
	if code := s.lease(t, "keepalive", "ttl", a); code != 410 {
		t.Errorf("keepalive of the expired holder: %d, want 410", code)
	}
	waitfor.Condition(t, 5*time.Second, "the expiry to be counted", func() bool { return metricValue(t, s, "shared_lock_expiries_total") >= 1 })
}

func metricValue(t testing.TB, s *testServer, name string) float64 {
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name+" ") {
			var v float64
			fmt.Sscan(strings.TrimPrefix(l, name+" "), &v)
			return v
		}
	}
	return -1
}

// A client that leaves while waiting leaves no waiter behind.
func TestClientGoneMidAcquire(t *testing.T) {
	s := start(t, testConfig(t))
	_, a := s.acquire(t, "q", "a", 30, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- post(t, ctx, s.url+"/v1/locks/q/acquire", map[string]any{"owner": "b", "ttlSeconds": 30, "waitSeconds": 60}, nil)
	}()
	waitfor.Condition(t, 5*time.Second, "b to wait", func() bool { return s.holder(t, "q").Waiters == 1 })
	cancel()
	<-done
	waitfor.Condition(t, 5*time.Second, "b's place to go", func() bool { return s.holder(t, "q").Waiters == 0 })
	s.lease(t, "release", "q", a)
	// c gets it at once: no stale waiter stands before it
	if code, _ := s.acquire(t, "q", "c", 30, 0); code != 200 {
		t.Errorf("after a waiter left: %d", code)
	}
}

// A holder process killed with SIGKILL: its lock is free within TTL + 2 s.
func TestHolderKilled(t *testing.T) {
	s := start(t, testConfig(t))
	holder := exec.Command(os.Args[0], "-test.run=TestHelperHolder")
	holder.Env = append(os.Environ(), "SHARED_LOCK_HELPER="+s.url)
	out, _ := holder.StdoutPipe()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Process.Kill()
	buf := make([]byte, 64)
	n, _ := out.Read(buf) // "held" once it holds the lock
	if !strings.Contains(string(buf[:n]), "held") {
		t.Fatalf("helper said %q", buf[:n])
	}
	// it renews: the lock stays held past its TTL
	time.Sleep(4 * time.Second) // longer than the TTL: only renewals keep it
	if h := s.holder(t, "killed"); !h.Held || h.Owner != "helper" {
		t.Fatalf("a renewing holder lost its lock: %+v", h)
	}
	holder.Process.Kill()
	holder.Wait()
	killed := time.Now()
	code, _ := s.acquire(t, "killed", "next", 3, 30)
	if took := time.Since(killed); code != 200 || took > 5*time.Second {
		t.Errorf("acquire after the holder died: %d after %v, want within TTL 3s + 2s", code, took)
	}
}

// TestHelperHolder is the holder process of TestHolderKilled.
func TestHelperHolder(t *testing.T) {
	url := os.Getenv("SHARED_LOCK_HELPER")
	if url == "" {
		t.Skip("helper process of TestHolderKilled")
	}
	s := &testServer{url: url}
	code, g := s.acquire(t, "killed", "helper", 3, 10)
	if code != 200 {
		t.Fatal(code)
	}
	fmt.Println("held")
	for {
		time.Sleep(time.Second)
		s.lease(t, "keepalive", "killed", g)
	}
}

// etcd restarted under a held lock: the lease survives with its TTL, the
// holder that renews keeps the lock, nobody else gets it meanwhile.
func TestEtcdRestartUnderAHeldLock(t *testing.T) {
	cfg := testConfig(t)
	log := logline.NewLogger(logline.NewOutput(io.Discard), "shared-lock")
	s1, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	h1 := httptest.NewServer(s1.Handler())
	ts1 := &testServer{url: h1.URL}
	code, a := ts1.acquire(t, "r", "a", 10, 0)
	if code != 200 {
		t.Fatal(code)
	}
	h1.Close()
	s1.Close()
	s2 := start(t, cfg)
	if code, _ := s2.acquire(t, "r", "b", 10, 0); code != 409 {
		t.Errorf("another owner after the restart: %d, want 409", code)
	}
	if code := s2.lease(t, "keepalive", "r", a); code != 200 {
		t.Errorf("the holder's keepalive after the restart: %d", code)
	}
	if h := s2.holder(t, "r"); h.Owner != "a" {
		t.Errorf("holder after the restart: %+v", h)
	}
}

func TestBadRequests(t *testing.T) {
	s := start(t, testConfig(t))
	cases := []struct {
		path, body string
		code       int
		want       string
	}{
		{"/v1/locks/-bad/acquire", `{"owner":"a","ttlSeconds":5}`, 400, "name"},
		{"/v1/locks/" + strings.Repeat("x", 129) + "/acquire", `{"owner":"a","ttlSeconds":5}`, 400, "name"},
		{"/v1/locks/ok/acquire", `{"ttlSeconds":5}`, 400, "owner"},
		{"/v1/locks/ok/acquire", `{"owner":"a\u0001","ttlSeconds":5}`, 400, "owner"},
		{"/v1/locks/ok/acquire", `{"owner":"a","ttlSeconds":1}`, 400, "ttlSeconds"},
		{"/v1/locks/ok/acquire", `{"owner":"a","ttlSeconds":100000}`, 400, "ttlSeconds"},
		{"/v1/locks/ok/acquire", `{"owner":"a","ttlSeconds":5,"waitSeconds":-1}`, 400, "waitSeconds"},
		{"/v1/locks/ok/acquire", `{"owner":"a","ttlSeconds":"5"}`, 400, "body"},
		{"/v1/locks/ok/acquire", `{"owner":"a","ttlSeconds":5,"extra":1}`, 400, "unknown field"},
		{"/v1/locks/ok/acquire", `{"owner":"a","ttlSeconds":5}{}`, 400, "more than one"},
		{"/v1/locks/ok/acquire", `not json`, 400, "body"},
		{"/v1/locks/ok/keepalive", `{"owner":"a","lease":"zz"}`, 400, "lease"},
		{"/v1/locks/ok/keepalive", `{"owner":"a","lease":"1234","token":-3}`, 400, "token"},
		{"/v1/locks/ok/release", `{"owner":"a","lease":"1234","token":"3"}`, 400, "body"},
		{"/v1/locks/ok/release", `{"owner":"a","lease":"1234"}`, 400, "secret"},
		{"/v1/locks/ok/release", `{"owner":"a","lease":"1234","secret":"x"}`, 410, "ended"},
	}
	for _, c := range cases {
		resp, err := http.Post(s.url+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(b), c.want) {
			t.Errorf("%s %s: %d %s, want %d naming %q", c.path, c.body, resp.StatusCode, b, c.code, c.want)
		}
	}
	if resp, _ := http.Get(s.url + "/v1/locks/ok/acquire"); resp.StatusCode != 405 {
		t.Errorf("GET acquire: %d", resp.StatusCode)
	}
	if resp, _ := http.Get(s.url + "/healthz"); resp.StatusCode != 200 {
		t.Errorf("healthz: %d", resp.StatusCode)
	}
}

// externalEtcd returns the endpoints of the external etcd of the tests
// (PW_TEST_ETCD_ENDPOINTS, set to the run's own by .ci/services), or why it is
// not there.
func externalEtcd() (string, error) {
	endpoints := os.Getenv("PW_TEST_ETCD_ENDPOINTS")
	if endpoints == "" {
		return "", fmt.Errorf("PW_TEST_ETCD_ENDPOINTS unset (the run's own etcd: make test and make bench start it with .ci/services start)")
	}
	c, err := net.DialTimeout("tcp", strings.Split(endpoints, ",")[0], 2*time.Second)
	if err != nil {
		return "", fmt.Errorf("no etcd on %s: %w", endpoints, err)
	}
	c.Close()
	return endpoints, nil
}

// The same server against a real external etcd (Debian's etcd-server on
// loopback, started by .ci/services), chosen with SHARED_LEASE_ETCD_ENDPOINTS.
func TestExternalEtcd(t *testing.T) {
	endpoints, err := externalEtcd()
	if err != nil {
		t.Fatalf("%v: start it with .ci/services (make test does)", err)
	}
	t.Setenv("SHARED_LEASE_ETCD_ENDPOINTS", endpoints)
	cfg := DefaultConfig()
	cfg.FromEnv()
	cfg.Prefix = fmt.Sprintf("/pw-test-%d/", time.Now().UnixNano())
	s := start(t, cfg)
	if s.etcd != nil {
		t.Fatal("started an embedded etcd although SHARED_LEASE_ETCD_ENDPOINTS is set")
	}
	code, a := s.acquire(t, "ext", "a", 5, 0)
	if code != 200 {
		t.Fatalf("acquire %d", code)
	}
	if code, _ := s.acquire(t, "ext", "b", 5, 0); code != 409 {
		t.Errorf("second owner: %d", code)
	}
	if code := s.lease(t, "release", "ext", a); code != 200 {
		t.Errorf("release %d", code)
	}
	if code, b := s.acquire(t, "ext", "b", 5, 0); code != 200 || b.Token <= a.Token {
		t.Errorf("after release: %d %+v", code, b)
	}
}
