package config

import (
	"strings"
	"testing"
	"time"
)

func TestProbes(t *testing.T) {
	src := `
- name: a
  entrypoint: x
  readiness:
    tcp: {socket: "127.0.0.1:5673"}
  livenessProbe:
    httpGet: {path: /healthz, port: 8080, httpHeaders: [{name: X-Probe, value: kubelet}]}
    periodSeconds: 5
    failureThreshold: 2
  startupProbe:
    exec: {command: [cat, /tmp/ready]}
    initialDelaySeconds: 3
- name: b
  entrypoint: x
  readinessProbe:
    tcpSocket: {port: 5432}
    successThreshold: 2
  liveness:
    http: {url: "https://user:pw@example.com/x", expectedStatus: "200-299,404", bodyMatch: "ok|fine", method: head}
  startup:
    file: {path: /tmp/f, maxAge: 1m30s}
`
	procs, err := Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	a, b := procs[0], procs[1]
	if r := a.Readiness; r.Kind != "tcp" || r.TCP.Socket != "127.0.0.1:5673" || r.Period != 10*time.Second ||
		r.Timeout != time.Second || r.SuccessThreshold != 1 || r.FailureThreshold != 3 || r.InitialDelay != 0 {
		t.Errorf("readiness with kubelet defaults: %+v", r)
	}
	if l := a.Liveness; l.Kind != "http" || l.HTTP.URL != "http://127.0.0.1:8080/healthz" || l.HTTP.Method != "GET" ||
		l.Period != 5*time.Second || l.FailureThreshold != 2 || len(l.HTTP.Headers) != 1 || l.HTTP.Headers[0].Key != "X-Probe" {
		t.Errorf("httpGet form: %+v %+v", l, l.HTTP)
	}
	if s := a.Startup; s.Kind != "exec" || strings.Join(s.Exec.Command, " ") != "cat /tmp/ready" || s.InitialDelay != 3*time.Second {
		t.Errorf("exec startup: %+v", s)
	}
	if r := b.Readiness; r.Kind != "tcp" || r.TCP.Socket != "127.0.0.1:5432" || r.SuccessThreshold != 2 {
		t.Errorf("tcpSocket form: %+v", r)
	}
	if l := b.Liveness.HTTP; l.Method != "HEAD" || len(l.StatusRanges) != 2 || l.StatusRanges[1] != [2]int{404, 404} || l.BodyRegexp == nil {
		t.Errorf("http: %+v", l)
	}
	if f := b.Startup.File; f.Path != "/tmp/f" || time.Duration(f.MaxAge) != 90*time.Second {
		t.Errorf("file: %+v", f)
	}
}

func TestProbeErrors(t *testing.T) {
	cases := map[string]struct{ probe, want string }{
		"no kind":             {"readiness: {periodSeconds: 5}", `field "readiness": needs one check kind`},
		"two kinds":           {"readiness: {tcp: {socket: 'a:1'}, file: {path: /x}}", `field "readiness": has several check kinds (tcp, file)`},
		"both spellings":      {"readiness: {tcp: {socket: 'a:1'}}\n  readinessProbe: {tcp: {socket: 'a:1'}}", `field "readinessProbe": both readiness and readinessProbe are set`},
		"both forms of http":  {"liveness: {http: {port: 1}, httpGet: {port: 1}}", `has several check kinds (http, httpGet)`},
		"unknown probe field": {"readiness: {tcp: {socket: 'a:1'}, periodSecond: 1}", `field "readiness.periodSecond": unknown field`},
		"unknown check field": {"readiness: {tcp: {sockett: 'a:1'}}", `field "readiness.tcp.sockett": unknown field (known fields: socket)`},
		"k8s unknown field":   {"livenessProbe: {httpGet: {port: 1, paht: /}}", `field "livenessProbe.httpGet.paht": unknown field`},
		"bad socket":          {"readiness: {tcp: {socket: nope}}", `field "readiness.tcp.socket": want host:port`},
		"named port":          {"readinessProbe: {httpGet: {port: http}}", `field "readinessProbe.httpGet.port": expected an integer`},
		"missing port":        {"readinessProbe: {httpGet: {path: /}}", `field "readinessProbe.httpGet.port": required`},
		"bad duration":        {"readiness: {file: {path: /x, maxAge: 5 minutes}}", `field "readiness.file.maxAge": want a duration such as 500ms`},
		"liveness success 2":  {"liveness: {tcp: {socket: 'a:1'}, successThreshold: 2}", `field "liveness.successThreshold": must be 1 for a liveness probe`},
		"zero period":         {"readiness: {tcp: {socket: 'a:1'}, periodSeconds: 0}", `field "readiness.periodSeconds": must be at least 1`},
		"bad status":          {"readiness: {http: {port: 1, expectedStatus: 2xx}}", `field "readiness.http.expectedStatus": want statuses`},
		"bad regexp":          {"readiness: {http: {port: 1, bodyMatch: '('}}", `field "readiness.http.bodyMatch": bad regular expression`},
		"bad method":          {"readiness: {http: {port: 1, method: 'GET /x'}}", `field "readiness.http.method": want an HTTP method`},
		"bad header name":     {"readiness: {http: {port: 1, headers: {'X Y': z}}}", `field "readiness.http.headers.X Y": want a header name`},
		"header injection":    {"readiness: {httpGet: {port: 1, httpHeaders: [{name: A, value: \"s3cret\\r\\nX-Evil: 1\"}]}}", `field "readiness.httpGet.httpHeaders[0]": a header value cannot hold control characters (a line break would end the header): byte 6 is '\r'`},
		"url and port":        {"readiness: {http: {url: 'http://a/', port: 1}}", `url and host/port/path/scheme are both set`},
		"bad url":             {"readiness: {http: {url: 'ftp://u:secret@a/'}}", `want an http:// or https:// URL, got "ftp://u:xxxxx@a/"`},
		"exec without cmd":    {"readiness: {exec: {command: []}}", `field "readiness.exec.command": required`},
		"sql without dsn":     {"readiness: {sql: {query: select 1}}", `field "readiness.sql.dsn": required`},
		"heartbeat no maxAge": {"liveness: {heartBeat: {file: /x}}", `field "liveness.heartBeat.maxAge": required`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte("- name: a\n  entrypoint: x\n  "+tc.probe+"\n"))
			// and no error shows a credential
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `p.yaml:`) || !strings.Contains(err.Error(), `process "a"`) || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %v\nwant %q", err, tc.want)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://app:s3cret@db:5432/x?sslmode=disable": "postgres://app:xxxxx@db:5432/x?sslmode=disable",
		"amqp://guest:guest@localhost:5672/":              "amqp://guest:xxxxx@localhost:5672/",
		"host=db user=app password=s3cret dbname=x":       "host=db user=app password=xxxxx dbname=x",
		"http://example.com/no/secret":                    "http://example.com/no/secret",
		"http://user@example.com/":                        "http://user@example.com/",
		// what a URL parser refuses still loses its password
		"postgres://app:s3/cret@db/x":                                     "postgres://app:xxxxx@db/x",
		"amqp://app:s3#cret@mq/":                                          "amqp://app:xxxxx@mq/",
		"amqp://app:s3 cret@mq/":                                          "amqp://app:xxxxx@mq/",
		"postgres://app:s3cret%zz@db/x":                                   "postgres://app:xxxxx@db/x",
		`parse "postgres://app:s3cret%zz@db/x": invalid URL escape "%zz"`: `parse "postgres://app:xxxxx@db/x": invalid URL escape "%zz"`,
		"host=db password='s3 cret' dbname=x":                             "host=db password=xxxxx dbname=x",
		"http://127.0.0.1:8080/health?token=s3cret&x=1":                   "http://127.0.0.1:8080/health?token=xxxxx&x=1",
		"http://h/p?api_key=s3cret&X-Signature=s3cret":                    "http://h/p?api_key=xxxxx&X-Signature=xxxxx",
		"http://h/p?access_token=s3cret#frag":                             "http://h/p?access_token=xxxxx#frag",
		"http://h:8080/p?page=2":                                          "http://h:8080/p?page=2",
	} {
		if got := Redact(in); got != want || strings.Contains(got, "s3cret") {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHookErrors(t *testing.T) {
	cases := map[string]string{
		"postStart: [{}]": `field "postStart[0]": needs a command`,
		"postStart: [{command: [x], sql: {dsn: d, statements: [s]}}]": `field "postStart[0]": has both command and sql`,
		"postStart: [{sql: {dsn: d}}]":                                `field "postStart[0].sql.statements": required`,
		"postStart: [{sql: {statements: [s]}}]":                       `field "postStart[0].sql.dsn": required`,
		"postStart: [{command: [x], timeoutSeconds: 0}]":              `field "postStart[0].timeoutSeconds": must be at least 1`,
		"postStart: [{command: [x], retries: 3}]":                     `field "postStart[0].retries": unknown field`,
	}
	for src, want := range cases {
		_, err := Parse("h.yaml", []byte("- name: a\n  entrypoint: x\n  "+src+"\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", src, err, want)
		}
	}
	procs, err := Parse("h.yaml", []byte("- name: a\n  entrypoint: x\n  postStart: [{command: [warm, up], env: {A: b}}, {sql: {dsn: d, statements: [s]}, timeoutSeconds: 5}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := procs[0].PostStart
	if len(h) != 2 || h[0].Process != "a" || h[0].Timeout != DefaultHookTimeout || h[1].Index != 1 || h[1].Timeout != 5*time.Second || h[1].SQL.DSN != "d" {
		t.Errorf("hooks %+v", h)
	}
}
