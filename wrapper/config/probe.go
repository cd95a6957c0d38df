package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// Probe is one validated probe (startup, readiness or liveness): one check
// kind and kubelet's timing fields.
type Probe struct {
	Kind string // the key of the check: http, tcp, exec, grpc, file, env, sql, amqp, floatingPid, heartBeat
	Check
	InitialDelay     time.Duration
	Period           time.Duration
	Timeout          time.Duration
	SuccessThreshold int
	FailureThreshold int
}

// Check holds the settings of the probe's kind; exactly one is set.
type Check struct {
	HTTP        *HTTPCheck
	TCP         *TCPCheck
	Exec        *ExecCheck
	GRPC        *GRPCCheck
	File        *FileCheck
	Env         *EnvCheck
	SQL         *SQLCheck
	AMQP        *AMQPCheck
	FloatingPid *FloatingPidCheck
	HeartBeat   *HeartBeatCheck
}

// HTTPCheck asks a URL and expects a status in a range (and a body match).
type HTTPCheck struct {
	URL                string `yaml:"url"`
	Scheme             string `yaml:"scheme"`
	Host               string `yaml:"host"`
	Port               int    `yaml:"port"`
	Path               string `yaml:"path"`
	Method             string `yaml:"method"`
	Headers            KVList `yaml:"headers"`
	ExpectedStatus     string `yaml:"expectedStatus"`
	BodyMatch          string `yaml:"bodyMatch"`
	InsecureSkipVerify bool   `yaml:"insecureSkipVerify"`

	StatusRanges [][2]int       `yaml:"-"` // parsed ExpectedStatus
	BodyRegexp   *regexp.Regexp `yaml:"-"` // parsed BodyMatch, nil when unset
}

// TCPCheck connects to host:port.
type TCPCheck struct {
	Socket string `yaml:"socket"`
}

// ExecCheck runs a command; exit 0 is healthy.
type ExecCheck struct {
	Command []string `yaml:"command"`
}

// GRPCCheck calls the standard gRPC health-checking protocol.
type GRPCCheck struct {
	Host    string `yaml:"host"`
	Port    int    `yaml:"port"`
	Service string `yaml:"service"`
}

// FileCheck wants a file to exist (and be non-empty, or recent).
type FileCheck struct {
	Path     string   `yaml:"path"`
	NonEmpty bool     `yaml:"nonEmpty"`
	MaxAge   Duration `yaml:"maxAge"`
}

// EnvCheck wants a variable of the process's environment set (to a value).
type EnvCheck struct {
	Name  string  `yaml:"name"`
	Value *string `yaml:"value"`
}

// SQLCheck runs a query on PostgreSQL.
type SQLCheck struct {
	DSN    string  `yaml:"dsn"`
	Query  string  `yaml:"query"`
	Expect *string `yaml:"expect"`
}

// AMQPCheck dials RabbitMQ, opens a channel and may declare a queue passively.
type AMQPCheck struct {
	DSN   string `yaml:"dsn"`
	Queue string `yaml:"queue"`
}

// FloatingPidCheck follows the pid a forking daemon writes to a file.
type FloatingPidCheck struct {
	PidFile string `yaml:"pidFile"`
}

// HeartBeatCheck wants a beat (a touched file, or a POST to the wrapper's
// /heartbeat/<process> from loopback) at least every MaxAge.
type HeartBeatCheck struct {
	File   string   `yaml:"file"`
	MaxAge Duration `yaml:"maxAge"`
}

// Duration is a Go duration written as a string ("30s", "1m30s").
type Duration time.Duration

type rawProbe struct {
	HTTP        *HTTPCheck        `yaml:"http"`
	HTTPGet     *rawHTTPGet       `yaml:"httpGet"`
	TCP         *TCPCheck         `yaml:"tcp"`
	TCPSocket   *rawTCPSocket     `yaml:"tcpSocket"`
	Exec        *ExecCheck        `yaml:"exec"`
	GRPC        *GRPCCheck        `yaml:"grpc"`
	File        *FileCheck        `yaml:"file"`
	Env         *EnvCheck         `yaml:"env"`
	SQL         *SQLCheck         `yaml:"sql"`
	AMQP        *AMQPCheck        `yaml:"amqp"`
	FloatingPid *FloatingPidCheck `yaml:"floatingPid"`
	HeartBeat   *HeartBeatCheck   `yaml:"heartBeat"`

	InitialDelaySeconds *int `yaml:"initialDelaySeconds"`
	PeriodSeconds       *int `yaml:"periodSeconds"`
	TimeoutSeconds      *int `yaml:"timeoutSeconds"`
	SuccessThreshold    *int `yaml:"successThreshold"`
	FailureThreshold    *int `yaml:"failureThreshold"`
}

// rawHTTPGet is Kubernetes' httpGet action.
type rawHTTPGet struct {
	Path        string      `yaml:"path"`
	Port        int         `yaml:"port"`
	Host        string      `yaml:"host"`
	Scheme      string      `yaml:"scheme"`
	HTTPHeaders []rawEnvVar `yaml:"httpHeaders"`
}

// check is the HTTP check of the action, before validateHTTP.
func (h *rawHTTPGet) check() *HTTPCheck {
	c := &HTTPCheck{Scheme: strings.ToLower(h.Scheme), Host: h.Host, Port: h.Port, Path: h.Path}
	for _, hd := range h.HTTPHeaders {
		c.Headers = append(c.Headers, KV{Key: hd.Name, Value: hd.Value})
	}
	return c
}

// oneOf wants exactly one of the kinds set at n (a probe's check, a
// handler), and returns it; known lists them for the error.
func (d *decoder) oneOf(n *yaml.Node, field, what string, set []string, known string) (string, bool) {
	switch {
	case len(set) == 0:
		d.fail(n, field, "needs one %s (%s)", what, known)
		return "", false
	case len(set) > 1:
		d.fail(n, field, "has several %ss (%s): use one", what, strings.Join(set, ", "))
		return "", false
	}
	return set[0], true
}

// rawTCPSocket is Kubernetes' tcpSocket action.
type rawTCPSocket struct {
	Port int    `yaml:"port"`
	Host string `yaml:"host"`
}

// validateProbe checks one probe; which is "readiness", "liveness" or "startup".
func validateProbe(d *decoder, n *yaml.Node, field, which string, raw *rawProbe) *Probe {
	p := &Probe{}
	var kinds []string
	set := func(kind string, ok bool) {
		if ok {
			kinds = append(kinds, kind)
		}
	}
	set("http", raw.HTTP != nil)
	set("httpGet", raw.HTTPGet != nil)
	set("tcp", raw.TCP != nil)
	set("tcpSocket", raw.TCPSocket != nil)
	set("exec", raw.Exec != nil)
	set("grpc", raw.GRPC != nil)
	set("file", raw.File != nil)
	set("env", raw.Env != nil)
	set("sql", raw.SQL != nil)
	set("amqp", raw.AMQP != nil)
	set("floatingPid", raw.FloatingPid != nil)
	set("heartBeat", raw.HeartBeat != nil)
	kind, ok := d.oneOf(n, field, "check kind", kinds, "http, tcp, exec, grpc, file, env, sql, amqp, floatingPid, heartBeat, or Kubernetes' httpGet, tcpSocket")
	if !ok {
		return nil
	}
	// bad reports a mistake in field sub of the check
	bad := func(sub, format string, a ...any) {
		d.fail(child(child(n, kind), sub), field+"."+kind+"."+sub, format, a...)
	}
	switch kind {
	case "http":
		p.HTTP = raw.HTTP
		validateHTTP(d, n, field+".http", p.HTTP)
	case "httpGet":
		h := raw.HTTPGet
		c := h.check()
		if h.Port == 0 {
			bad("port", "required: the port number (named ports do not exist outside a pod spec)")
		}
		kind, p.HTTP = "http", c
		validateHTTP(d, n, field+".httpGet", c)
	case "tcp":
		p.TCP = raw.TCP
		if _, _, err := net.SplitHostPort(p.TCP.Socket); err != nil {
			bad("socket", "want host:port, got %q", p.TCP.Socket)
		}
	case "tcpSocket":
		if raw.TCPSocket.Port <= 0 || raw.TCPSocket.Port > 65535 {
			bad("port", "required: a port number from 1 to 65535")
		}
		host := raw.TCPSocket.Host
		if host == "" {
			host = "127.0.0.1"
		}
		kind, p.TCP = "tcp", &TCPCheck{Socket: net.JoinHostPort(host, strconv.Itoa(raw.TCPSocket.Port))}
	case "exec":
		p.Exec = raw.Exec
		if len(p.Exec.Command) == 0 || p.Exec.Command[0] == "" {
			bad("command", "required: the program and its arguments")
		}
	case "grpc":
		p.GRPC = raw.GRPC
		if p.GRPC.Port <= 0 || p.GRPC.Port > 65535 {
			bad("port", "required: a port number from 1 to 65535")
		}
		if p.GRPC.Host == "" {
			p.GRPC.Host = "127.0.0.1"
		}
	case "file":
		p.File = raw.File
		if p.File.Path == "" {
			bad("path", "required")
		}
	case "env":
		p.Env = raw.Env
		if err := checkEnvName(p.Env.Name); err != nil {
			bad("name", "%v", err)
		}
	case "sql":
		p.SQL = raw.SQL
		if p.SQL.DSN == "" {
			bad("dsn", "required: a PostgreSQL connection string")
		} else if err := checkDSN(p.SQL.DSN); err != nil {
			bad("dsn", "%v", err)
		}
		if p.SQL.Query == "" {
			p.SQL.Query = "SELECT 1"
		}
	case "amqp":
		p.AMQP = raw.AMQP
		if err := checkDSN(p.AMQP.DSN); err != nil {
			bad("dsn", "%v", err)
		}
	case "floatingPid":
		p.FloatingPid = raw.FloatingPid
		if p.FloatingPid.PidFile == "" {
			bad("pidFile", "required")
		}
	case "heartBeat":
		p.HeartBeat = raw.HeartBeat
		if p.HeartBeat.MaxAge <= 0 {
			bad("maxAge", "required: how long a beat stays fresh, such as 30s")
		}
	}
	p.Kind = kind

	// kubelet's defaults and rules
	p.InitialDelay = seconds(raw.InitialDelaySeconds, 0)
	p.Period = seconds(raw.PeriodSeconds, 10)
	p.Timeout = seconds(raw.TimeoutSeconds, 1)
	p.SuccessThreshold = intOr(raw.SuccessThreshold, 1)
	p.FailureThreshold = intOr(raw.FailureThreshold, 3)
	positive := func(name string, v *int, min int) {
		if v != nil && *v < min {
			d.fail(child(n, name), field+"."+name, "must be at least %d, got %d", min, *v)
		}
	}
	positive("initialDelaySeconds", raw.InitialDelaySeconds, 0)
	positive("periodSeconds", raw.PeriodSeconds, 1)
	positive("timeoutSeconds", raw.TimeoutSeconds, 1)
	positive("successThreshold", raw.SuccessThreshold, 1)
	positive("failureThreshold", raw.FailureThreshold, 1)
	if which != "readiness" && p.SuccessThreshold != 1 {
		d.fail(child(n, "successThreshold"), field+".successThreshold", "must be 1 for a %s probe (as in Kubernetes)", which)
	}
	return p
}

func seconds(v *int, def int) time.Duration {
	if v == nil {
		return time.Duration(def) * time.Second
	}
	return time.Duration(*v) * time.Second
}

func intOr(v *int, def int) int {
	if v == nil {
		return def
	}
	return *v
}

func validateHTTP(d *decoder, n *yaml.Node, field string, c *HTTPCheck) {
	kindNode := child(n, field[strings.LastIndexByte(field, '.')+1:])
	if c.URL != "" && (c.Host != "" || c.Port != 0 || c.Path != "" || c.Scheme != "") {
		d.fail(kindNode, field, "url and host/port/path/scheme are both set: use one")
	}
	if c.URL == "" {
		if c.Port <= 0 || c.Port > 65535 {
			d.fail(child(kindNode, "port"), field+".port", "required (or url): a port number from 1 to 65535")
		}
		scheme := strings.ToLower(c.Scheme)
		if scheme == "" {
			scheme = "http"
		}
		if scheme != "http" && scheme != "https" {
			d.fail(child(kindNode, "scheme"), field+".scheme", "must be HTTP or HTTPS, got %q", c.Scheme)
		}
		host := c.Host
		if host == "" {
			host = "127.0.0.1"
		}
		path := c.Path
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		c.URL = scheme + "://" + net.JoinHostPort(host, strconv.Itoa(c.Port)) + path
	} else if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		d.fail(child(kindNode, "url"), field+".url", "want an http:// or https:// URL, got %q", Redact(c.URL))
	}
	if c.Method == "" {
		c.Method = "GET"
	}
	c.Method = strings.ToUpper(c.Method)
	if !isToken(c.Method) {
		d.fail(child(kindNode, "method"), field+".method", "want an HTTP method (letters, no spaces), got %q", c.Method)
	}
	headers := "headers"
	if strings.HasSuffix(field, ".httpGet") {
		headers = "httpHeaders"
	}
	for i, kv := range c.Headers {
		at := fmt.Sprintf("%s.%s[%d]", field, headers, i)
		if headers == "headers" {
			at = fmt.Sprintf("%s.headers.%s", field, kv.Key)
		}
		if !isToken(kv.Key) {
			d.fail(child(kindNode, headers), at, "want a header name (letters, digits and !#$%%&'*+-.^_`|~), got %q", kv.Key)
		} else if i := strings.IndexFunc(kv.Value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }); i >= 0 {
			// the value itself is not shown: it may be a credential
			d.fail(child(kindNode, headers), at, "a header value cannot hold control characters (a line break would end the header): byte %d is %q", i, kv.Value[i])
		}
	}
	if c.ExpectedStatus == "" {
		c.ExpectedStatus = "200-399" // kubelet's rule
	}
	ranges, err := parseStatusRanges(c.ExpectedStatus)
	if err != nil {
		d.fail(child(kindNode, "expectedStatus"), field+".expectedStatus", "%v", err)
	}
	c.StatusRanges = ranges
	if c.BodyMatch != "" {
		re, err := regexp.Compile(c.BodyMatch)
		if err != nil {
			d.fail(child(kindNode, "bodyMatch"), field+".bodyMatch", "bad regular expression: %v", err)
		} else {
			c.BodyRegexp = re
		}
	}
}

// isToken says whether s is an HTTP token (RFC 9110 5.6.2), which methods
// and header names are.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// parseStatusRanges reads "200", "200-399" or "200-299,404".
func parseStatusRanges(s string) ([][2]int, error) {
	var out [][2]int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err1 != nil || err2 != nil || a < 100 || b > 599 || a > b {
			return nil, fmt.Errorf("want statuses such as 200, 200-399 or 200-299,404, got %q", s)
		}
		out = append(out, [2]int{a, b})
	}
	return out, nil
}

// Redact hides the secrets of a URL or DSN, or of a text that quotes one
// (an error message), for logs and bodies: the password of every
// scheme://user:password@ in it, even one a URL parser refuses (a '/', '#',
// space or bad escape in it), a key=value password, and the values of
// query parameters whose names say secret (token, key, password, secret,
// signature...).
func Redact(s string) string {
	s = redactUserinfo(s)
	s = secretParam().ReplaceAllString(s, "${1}xxxxx")
	// key=value DSNs (PostgreSQL): password=secret, password='a b'
	return dsnPassword().ReplaceAllString(s, "${1}xxxxx")
}

// The redaction's expressions are compiled at their first use, not at every
// start (0.1 ms, for a wrapper that may never redact).
var (
	secretParam = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?i)([?&;](?:[a-z0-9_.-]*(?:token|secret|passw(?:or)?d|pass|pwd|key|signature|sig|auth|credential)[a-z0-9_.-]*)=)[^&#\s"']*`)
	})
	dsnPassword = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?i)(\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s"]*)`)
	})
)

// redactUserinfo replaces the password of each scheme://user:password@ in s
// by xxxxx. The userinfo runs from the "://" to the last '@' before the
// text ends, or a quote or line end ends it: a password may hold '/', '#',
// spaces, '@'.
func redactUserinfo(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "://")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		rest := s[i+3:]
		end := strings.IndexAny(rest, "\"'\n")
		if end < 0 {
			end = len(rest)
		}
		at := strings.LastIndexByte(rest[:end], '@')
		colon := strings.IndexByte(rest[:max(at, 0)], ':')
		if at < 0 || colon < 0 || strings.ContainsAny(rest[:colon], "/?#@ ") {
			b.WriteString(s[:i+3])
			s = rest
			continue
		}
		b.WriteString(s[:i+3])
		b.WriteString(rest[:colon+1])
		b.WriteString("xxxxx")
		s = rest[at:]
	}
}

// checkDSN refuses, at load and with the field's place, a URL-form DSN that
// no driver could parse; the error never shows its password. A DSN with
// $(VAR) is checked once expanded, when the probe is built.
func checkDSN(dsn string) error {
	if !strings.Contains(dsn, "://") || strings.Contains(dsn, "$(") {
		return nil
	}
	if _, err := url.Parse(dsn); err != nil {
		// the parser's own words may quote a piece of the password
		// (invalid port ":pa" after host): they are not shown
		return fmt.Errorf("not a valid URL (a password with '/', '#', '@', '%%' or a space must be percent-encoded): %s", Redact(dsn))
	}
	return nil
}
