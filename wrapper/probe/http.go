package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

// httpCheck asks over HTTP/1.1 with net/http's own request writer and
// response reader, on one connection kept between checks. It does not use
// http.Transport: a Transport keeps two goroutines and its own buffers
// per idle connection (100 probes held 200 goroutines, about 2 MB with
// their stacks and the Transport's state), and adds per request a
// cancellation context, a connection wait and a header clone (5 KB of
// garbage a check). Like kubelet's probes, redirects are not followed, no
// proxy is used and the body is not asked compressed; unlike them, the
// connection is kept (a new TCP connection per check is most of a
// check's cost: 100 probes each second would take 4 % of a core instead
// of under 1 %).
type httpCheck struct {
	c    *config.HTTPCheck
	url  string // redacted, for reasons
	addr string // host:port dialled
	tls  *tls.Config
	req  *http.Request // for ReadResponse (the method decides a body)
	wire []byte        // the request as sent, written once
	keep bool          // the period is short enough to keep the connection

	conn net.Conn
	in   *capped // conn's reads, capped while the head is read
	br   *bufio.Reader
	used time.Time // when the kept connection last answered
}

// capped reads at most left bytes: an answer's head is capped so that a
// server sending an endless first line (or what is not HTTP at all)
// costs a failed check, not the wrapper's memory.
type capped struct {
	r    io.Reader
	left int64
}

var errHeadTooLong = fmt.Errorf("the answer's head is longer than %d KiB", headLimit>>10)

func (c *capped) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errHeadTooLong
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

const (
	bodyLimit = 64 << 10
	// keepFor is how long an idle connection is kept (net/http's
	// IdleConnTimeout in the Transport this replaces); servers close
	// theirs after a few seconds to minutes
	keepFor = time.Minute
	// readBuffer holds the head of an answer; a larger head is read in
	// more calls, not refused
	readBuffer = 1 << 10
	// informational is how many 1xx answers are skipped before the final
	// one (net/http's Transport allows 5)
	informational = 5
	// headLimit caps the status line and headers of an answer (net/http's
	// Transport allows 1 MiB; a probe's answer has a few hundred bytes)
	headLimit = 64 << 10
)

func newHTTP(p *config.Probe, _ *Target) (Checker, error) {
	c := p.HTTP
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", config.Redact(c.URL), unwrapURLError(err))
	}
	h := &httpCheck{c: c, url: config.Redact(c.URL), addr: hostPort(u), keep: p.Period <= keepFor}
	if u.Scheme == "https" {
		h.tls = &tls.Config{ServerName: u.Hostname(), NextProtos: []string{"http/1.1"},
			InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // asked for in the config
	}
	req, err := http.NewRequest(c.Method, c.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", c.Method, h.url, unwrapURLError(err))
	}
	req.Header.Set("User-Agent", "process-wrapper-probe")
	for _, kv := range c.Headers {
		if strings.EqualFold(kv.Key, "Host") {
			req.Host = kv.Value
			continue
		}
		req.Header.Add(kv.Key, kv.Value)
	}
	// as http.Client does: a URL's user part is basic auth, unless the
	// headers carry their own Authorization
	if u.User != nil && req.Header.Get("Authorization") == "" {
		pass, _ := u.User.Password()
		req.SetBasicAuth(u.User.Username(), pass)
	}
	req.Close = !h.keep
	var wire bytes.Buffer
	if err := req.Write(&wire); err != nil {
		return nil, fmt.Errorf("%s %s: %w", c.Method, h.url, err)
	}
	h.req, h.wire = req, wire.Bytes()
	return h, nil
}

// hostPort is the address to dial for u, with the scheme's port when u
// has none.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// Close drops the kept connection.
func (h *httpCheck) Close() error {
	h.drop()
	return nil
}

func (h *httpCheck) drop() {
	if h.conn != nil {
		h.conn.Close()
		h.conn, h.in, h.br = nil, nil, nil
	}
}

// Check sends the request and wants a status in range (and a body match).
func (h *httpCheck) Check(ctx context.Context) error {
	if h.conn != nil && time.Since(h.used) > keepFor {
		h.drop()
	}
	reused := h.conn != nil
	resp, err := h.roundTrip(ctx)
	if err != nil && reused && ctx.Err() == nil && lostConnection(err) {
		// the server closed the kept connection while it was idle: as
		// net/http does, the request goes again on a new one
		resp, err = h.roundTrip(ctx)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", h.c.Method, h.url, clipped{err})
	}
	return h.judge(resp)
}

// roundTrip sends the request on the kept connection (dialled when there
// is none) and reads the answer's head and at most bodyLimit of its body.
// The connection is kept only when the answer was read to its end and
// the server did not ask to close it.
func (h *httpCheck) roundTrip(ctx context.Context) (*answer, error) {
	if h.conn == nil {
		if err := h.dial(ctx); err != nil {
			return nil, err
		}
	}
	conn := h.conn
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		h.drop()
		return nil, err
	}
	// a cancelled check (the wrapper stopping) must not wait for the
	// deadline: the connection's deadline is moved to now
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	a, err := h.exchange()
	if err != nil || !a.reusable || h.br.Buffered() > 0 || !h.keep {
		h.drop()
	} else {
		h.used = time.Now()
	}
	if err != nil {
		return nil, unlessCancelled(ctx, err)
	}
	return a, nil
}

func (h *httpCheck) dial(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return err
	}
	if h.tls != nil {
		tc := tls.Client(conn, h.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return err
		}
		conn = tc
	}
	h.conn, h.in = conn, &capped{r: conn}
	h.br = bufio.NewReaderSize(h.in, readBuffer)
	return nil
}

// answer is what a check needs of a response.
type answer struct {
	status   int
	body     []byte // read only when the status or a bodyMatch needs it
	reusable bool
}

func (h *httpCheck) exchange() (*answer, error) {
	if _, err := h.conn.Write(h.wire); err != nil {
		return nil, err
	}
	var resp *http.Response
	h.in.left = headLimit
	for i := 0; ; i++ {
		r, err := http.ReadResponse(h.br, h.req)
		if err != nil {
			return nil, err
		}
		if r.StatusCode >= 200 || r.StatusCode == http.StatusSwitchingProtocols || i == informational {
			resp = r
			break
		}
	}
	// the body is bounded by what a check reads of it
	h.in.left = math.MaxInt64
	a := &answer{status: resp.StatusCode}
	var err error
	if h.c.BodyRegexp != nil || !h.statusOK(resp.StatusCode) {
		a.body, err = io.ReadAll(io.LimitReader(resp.Body, bodyLimit))
	}
	if err == nil {
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, bodyLimit))
	}
	if err != nil {
		// the head arrived: a body cut short is still an answer, only
		// its connection cannot be used again
		return a, nil
	}
	// the body ended where its framing said (a further read says EOF;
	// a body that runs to the connection's end has Close set): the
	// connection is where the next answer starts, unless the server
	// switched it to another protocol
	var one [1]byte
	n, end := resp.Body.Read(one[:])
	a.reusable = n == 0 && end == io.EOF && !resp.Close && resp.StatusCode != http.StatusSwitchingProtocols
	return a, nil
}

// clipped is an error whose text is cut to excerptLimit bytes: what a
// server sends back can be quoted in it (net/http quotes a malformed
// status line whole).
type clipped struct{ err error }

func (c clipped) Error() string { return clip(c.err.Error()) }
func (c clipped) Unwrap() error { return c.err }

// lostConnection says whether err is a kept connection found closed by
// its server (nothing of an answer came back).
func lostConnection(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// unlessCancelled turns the error of a connection whose deadline the
// check's context moved into the context's own error.
func unlessCancelled(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

func (h *httpCheck) judge(a *answer) error {
	if !h.statusOK(a.status) {
		return fmt.Errorf("%s %s: status %d (want %s): %s", h.c.Method, h.url, a.status, h.c.ExpectedStatus, excerpt(a.body))
	}
	if h.c.BodyRegexp != nil && !h.c.BodyRegexp.Match(a.body) {
		return fmt.Errorf("%s %s: body does not match %q: %s", h.c.Method, h.url, h.c.BodyMatch, excerpt(a.body))
	}
	return nil
}

func (h *httpCheck) statusOK(code int) bool {
	for _, r := range h.c.StatusRanges {
		if code >= r[0] && code <= r[1] {
			return true
		}
	}
	return false
}

// unwrapURLError drops url.Error's repetition of the (unredacted) URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

const excerptLimit = 256

// clip cuts s to excerptLimit bytes (on a character's boundary).
func clip(s string) string {
	if len(s) <= excerptLimit {
		return s
	}
	s = s[:excerptLimit]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}

// excerpt returns the start of b as one line of text for a reason.
func excerpt(b []byte) string {
	s := strings.Join(strings.Fields(clip(strings.TrimSpace(string(b)))), " ")
	if s == "" {
		return "(empty body)"
	}
	return fmt.Sprintf("%q", s)
}
