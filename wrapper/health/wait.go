package health

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// LocalURL turns the wrapper's -http-address into the URL a client on the
// same host uses: an unspecified host (0.0.0.0, ::, empty) becomes loopback.
func LocalURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("-http-address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// WaitReady is the -wait client: it returns nil as soon as the wrapper at
// base answers /readiness with 200, and an error naming why not at the
// deadline. A wrapper not yet listening is waited for.
func WaitReady(ctx context.Context, base string, deadline time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	client := &http.Client{}
	last := "no answer yet"
	retry := 50 * time.Millisecond
	// ask once without waiting, so that a deadline shorter than the
	// server's ?wait still reports why the wrapper is not ready
	for _, query := range []string{"", "?wait"} {
		for {
			ok, answer, err := ask(ctx, client, base+"/readiness"+query)
			if ok {
				return nil
			}
			if answer != "" {
				last = answer
			} else if ctx.Err() == nil && err != nil {
				last = err.Error()
			}
			if err == nil && query == "" {
				break // answered 503: now wait for the change
			}
			t := time.NewTimer(retry)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("not ready after %s: %s", deadline, last)
			case <-t.C:
			}
			retry = min(2*retry, time.Second)
		}
	}
	return fmt.Errorf("not ready after %s: %s", deadline, last)
}

// ask GETs url: whether it answered 200, and the body of another answer.
func ask(ctx context.Context, client *http.Client, url string) (bool, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return true, "", nil
	}
	return false, fmt.Sprintf("status %d: %s", resp.StatusCode, strings.Join(strings.Fields(string(body)), " ")), nil
}
