package probe

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/process-wrapper/process-wrapper/internal/waitfor"
	amqp "github.com/rabbitmq/amqp091-go"
)

// The real servers of this run's .ci/services (make test starts them and
// passes their addresses in the environment): never a server found on a
// fixed port, which could be another program's.
func pgDSN(t *testing.T) string { return serviceDSN(t, "PW_TEST_PG_DSN", "PostgreSQL") }

func amqpDSN(t *testing.T) string { return serviceDSN(t, "PW_TEST_AMQP_DSN", "RabbitMQ") }

func serviceDSN(t *testing.T, env, what string) string {
	t.Helper()
	dsn := os.Getenv(env)
	if dsn == "" {
		t.Fatalf("%s unset: %s is this run's own (make test starts it with .ci/services start and sets %s)", env, what, env)
	}
	return dsn
}

// hostOf is the host:port of a DSN.
func hostOf(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// proxy forwards a loopback port to target until cut; it belongs to the
// test, so cutting it never disturbs the server other tests share.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	addr   string
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{target: target}
	p.listen(t, "127.0.0.1:0")
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) listen(t *testing.T, addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p.ln, p.addr = ln, ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
}

// cut closes the listener and every connection: the server is gone.
func (p *proxy) cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore(t *testing.T) { p.listen(t, p.addr) }

func replaceHost(t *testing.T, dsn, addr string) string {
	return strings.Replace(dsn, hostOf(t, dsn), addr, 1)
}

func TestSQL(t *testing.T) {
	dsn := pgDSN(t)
	noLeak(t)
	wantErr(t, check(t, fmt.Sprintf("sql: {dsn: %q}", dsn), nil), "")
	wantErr(t, check(t, fmt.Sprintf("sql: {dsn: %q, query: 'SELECT 41 + 1', expect: '42'}", dsn), nil), "")
	wantErr(t, check(t, fmt.Sprintf("sql: {dsn: %q, query: 'SELECT NULL', expect: 'x'}", dsn), nil), `returned NULL, want "x"`)
	wantErr(t, check(t, fmt.Sprintf("sql: {dsn: %q, query: 'SELECT 1 WHERE false', expect: '1'}", dsn), nil), "returned no row")
	wantErr(t, check(t, fmt.Sprintf("sql: {dsn: %q, query: \"SELECT 'up'\", expect: 'down'}", dsn), nil), `returned "up", want "down"`)
	wantErr(t, check(t, fmt.Sprintf("sql: {dsn: %q, query: 'SELECT * FROM no_such_table'}", dsn), nil), `relation "no_such_table" does not exist`)

	bad := strings.Replace(dsn, "pw-secret", "wrong-s3cret", 1)
	err := check(t, fmt.Sprintf("sql: {dsn: %q}", bad), nil)
	if err == nil || !strings.Contains(err.Error(), "password authentication failed") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("wrong password: %v", err)
	}

	// a query longer than the timeout: the check ends by its timeout and the
	// server's backend goes away with the connection
	wantErr(t, check(t, fmt.Sprintf("sql: {dsn: %q, query: 'SELECT pg_sleep(30)'}\ntimeoutSeconds: 1", dsn), nil), "timed out after 1s")
	conn, err := pgconn.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	waitfor.Condition(t, 10*time.Second, "the probe's backend to end", func() bool {
		res, err := conn.Exec(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'").ReadAll()
		return err == nil && string(res[0].Rows[0][0]) == "0"
	})
}

func TestAMQP(t *testing.T) {
	dsn := amqpDSN(t)
	conn, err := amqp.Dial(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("pw-probe-test", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	noLeak(t)
	wantErr(t, check(t, fmt.Sprintf("amqp: {dsn: %q}", dsn), nil), "")
	wantErr(t, check(t, fmt.Sprintf("amqp: {dsn: %q, queue: pw-probe-test}", dsn), nil), "")
	wantErr(t, check(t, fmt.Sprintf("amqp: {dsn: %q, queue: no-such-queue}", dsn), nil), "NOT_FOUND")
	err = check(t, fmt.Sprintf("amqp: {dsn: %q}", strings.Replace(dsn, "guest:guest", "guest:wr0ng-s3cret", 1)), nil)
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "guest:xxxxx@") {
		t.Errorf("wrong password: %v", err)
	}

	// the DSN from the wrapper's template and credentials
	tmpl := &Target{Process: "p", AMQP: AMQPDefaults{DSNTemplate: "amqp://$(AMQP_PROBE_RABBITMQ_USER):$(AMQP_PROBE_RABBITMQ_PASS)@" + hostOf(t, amqpDSN(t)) + "/", User: "guest", Pass: "guest"}}
	wantErr(t, check(t, "amqp: {queue: pw-probe-test}", tmpl), "")
	plain := &Target{Process: "p", AMQP: AMQPDefaults{DSNTemplate: "amqp://" + hostOf(t, amqpDSN(t)) + "/", User: "guest", Pass: "guest"}}
	wantErr(t, check(t, "amqp: {}", plain), "")
	if _, err := New(parseProbe(t, "amqp: {}"), &Target{Process: "p"}); err == nil || !strings.Contains(err.Error(), "AMQP_PROBE_RABBITMQ_DSN_TEMPLATE") {
		t.Errorf("no dsn and no template: %v", err)
	}

	// a server that accepts but never speaks: the handshake ends by the timeout
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	silent := &proxy{}
	defer silent.cut()
	silent.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			silent.mu.Lock()
			silent.conns = append(silent.conns, c)
			silent.mu.Unlock()
		}
	}()
	wantErr(t, check(t, fmt.Sprintf("amqp: {dsn: 'amqp://guest:guest@%s/'}\ntimeoutSeconds: 1", ln.Addr()), nil), "timed out after 1s")
}

// A server gone mid-run, through a proxy the test owns (cutting it never
// disturbs the server the other tests share): the check fails, then passes
// again when the server is back.
func TestServerGoneMidRun(t *testing.T) {
	for _, c := range []struct {
		kind string
		dsn  func(*testing.T) string
	}{
		{"sql", pgDSN},
		{"amqp", amqpDSN},
	} {
		t.Run(c.kind, func(t *testing.T) {
			dsn := c.dsn(t)
			p := newProxy(t, hostOf(t, dsn))
			probe := fmt.Sprintf("%s: {dsn: %q}", c.kind, replaceHost(t, dsn, p.addr))
			wantErr(t, check(t, probe, nil), "")
			p.cut()
			wantErr(t, check(t, probe, nil), "connection refused")
			p.restore(t)
			wantErr(t, check(t, probe, nil), "")
		})
	}
}

// The servers the tests use are the run's own, started by .ci/services in
// its directory: never a server that merely answers on a known port.
func TestServicesAreTheRunsOwn(t *testing.T) {
	dir := os.Getenv("PW_TEST_SERVICES_DIR")
	if dir == "" {
		t.Fatal("PW_TEST_SERVICES_DIR unset: make test starts the run's own services with .ci/services start")
	}
	conn, err := pgconn.Connect(context.Background(), pgDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(context.Background(), "SHOW data_directory").ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
		t.Fatalf("SHOW data_directory: %v", err)
	}
	if got := string(res[0].Rows[0][0]); !strings.HasPrefix(got, dir+"/") {
		t.Errorf("PostgreSQL serves %s, not the run's %s", got, dir)
	}
	resp, err := http.Post("http://"+os.Getenv("PW_TEST_ETCD_ENDPOINTS")+"/v3/cluster/member/list", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if member := os.Getenv("PW_TEST_ETCD_MEMBER"); member == "" || !strings.Contains(string(body), `"name":"`+member+`"`) {
		t.Errorf("etcd's members %s, want the run's %q", body, member)
	}
}
