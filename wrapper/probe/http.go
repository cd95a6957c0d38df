package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

type httpCheck struct {
	c      *config.HTTPCheck
	url    string // redacted, for reasons
	client *http.Client
}

const bodyLimit = 64 << 10

func newHTTP(p *config.Probe, _ *Target) (Checker, error) {
	tr := &http.Transport{
		// Unlike kubelet, one connection is kept between checks: a new
		// TCP connection per check is most of a check's cost (100 probes
		// each second would take 4 % of a core instead of under 1 %). A
		// server that goes away closes it, and the next check dials again.
		// The worker closes it when the run ends (Close).
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
		Proxy:               nil,
		// a probe's request and the head of its answer are small, and each
		// kept connection holds both buffers: 100 probes keep 600 KiB less
		// than with net/http's 4 KiB ones
		WriteBufferSize: 512,
		ReadBufferSize:  1 << 10,
	}
	if p.HTTP.InsecureSkipVerify {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for in the config
	}
	return &httpCheck{
		c:   p.HTTP,
		url: config.Redact(p.HTTP.URL),
		client: &http.Client{
			Transport: tr,
			// a redirect is an answer in 300-399, which kubelet's range accepts
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// Close drops the kept connection.
func (h *httpCheck) Close() error {
	h.client.CloseIdleConnections()
	return nil
}

// Check sends the request and wants a status in range (and a body match).
func (h *httpCheck) Check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, h.c.Method, h.c.URL, nil)
	if err != nil {
		return fmt.Errorf("%s %s: %w", h.c.Method, h.url, err)
	}
	req.Header.Set("User-Agent", "process-wrapper-probe")
	for _, kv := range h.c.Headers {
		if strings.EqualFold(kv.Key, "Host") {
			req.Host = kv.Value
			continue
		}
		req.Header.Add(kv.Key, kv.Value)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", h.c.Method, h.url, unwrapURLError(err))
	}
	defer resp.Body.Close()
	var body []byte
	if h.c.BodyRegexp != nil || !h.statusOK(resp.StatusCode) {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, bodyLimit))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, bodyLimit))
	if !h.statusOK(resp.StatusCode) {
		return fmt.Errorf("%s %s: status %d (want %s): %s", h.c.Method, h.url, resp.StatusCode, h.c.ExpectedStatus, excerpt(body))
	}
	if h.c.BodyRegexp != nil && !h.c.BodyRegexp.Match(body) {
		return fmt.Errorf("%s %s: body does not match %q: %s", h.c.Method, h.url, h.c.BodyMatch, excerpt(body))
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

// excerpt returns the start of b as one line of text for a reason.
func excerpt(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > excerptLimit {
		s = s[:excerptLimit]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "..."
	}
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "(empty body)"
	}
	return fmt.Sprintf("%q", s)
}
