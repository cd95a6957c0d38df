// Package sharedlock is the shared-lock server: named locks with a TTL and
// an owner, held by leases in etcd, queued by etcd's lock recipe on the keys
// of etcd's concurrency.Mutex (see enqueue, awaitTurn). A holder keeps its lock only as long as it
// renews it: the server never renews a lease by itself. It embeds in a
// program (New, Handler, Close) the way etcd's embed package does, and starts
// a single-node embedded etcd when it is given no etcd endpoints.
package sharedlock

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// Config configures a Server. DefaultConfig gives its defaults.
type Config struct {
	// Listen is the HTTP address (SHARED_LEASE_SOCKET), ":8191" by default.
	Listen string
	// TokenFile holds the bearer token every /v1/ request must carry
	// (SHARED_LEASE_TOKEN_FILE); empty: no token.
	TokenFile string
	// Endpoints of an existing etcd cluster (SHARED_LEASE_ETCD_ENDPOINTS,
	// comma separated). Empty: an embedded single-node etcd in DataDir.
	Endpoints []string
	// DataDir of the embedded etcd.
	DataDir string
	// EmbeddedClientURL and EmbeddedPeerURL are where the embedded etcd
	// listens (loopback only by default).
	EmbeddedClientURL, EmbeddedPeerURL string
	// Prefix of every key the server writes in etcd.
	Prefix string
	// MinTTL and MaxTTL bound the TTL a client may ask for. etcd raises any
	// TTL below its own minimum (1.5 x its election timeout, so 2 s with the
	// embedded defaults) to that minimum, so MinTTL is 2 s.
	MinTTL, MaxTTL time.Duration
	// MaxWait bounds a blocking acquire.
	MaxWait time.Duration
	// DialTimeout bounds connecting to etcd.
	DialTimeout time.Duration
	// EtcdLogLevel is the level of the embedded etcd's own (JSON) logs on
	// stderr: "error" by default.
	EtcdLogLevel string
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Listen:            ":8191",
		DataDir:           "shared-lock.etcd",
		EmbeddedClientURL: "http://127.0.0.1:2379",
		EmbeddedPeerURL:   "http://127.0.0.1:2380",
		Prefix:            "/process-wrapper/shared-lock/",
		MinTTL:            2 * time.Second,
		MaxTTL:            24 * time.Hour,
		MaxWait:           time.Hour,
		DialTimeout:       5 * time.Second,
	}
}

// FromEnv applies SHARED_LEASE_SOCKET, SHARED_LEASE_ETCD_ENDPOINTS and
// SHARED_LEASE_TOKEN_FILE.
func (c *Config) FromEnv() {
	if v := os.Getenv("SHARED_LEASE_TOKEN_FILE"); v != "" {
		c.TokenFile = v
	}
	if v := os.Getenv("SHARED_LEASE_SOCKET"); v != "" {
		c.Listen = v
	}
	if v := os.Getenv("SHARED_LEASE_ETCD_ENDPOINTS"); v != "" {
		c.Endpoints = nil
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				c.Endpoints = append(c.Endpoints, e)
			}
		}
	}
}

func (c *Config) validate() error {
	if c.Prefix == "" || !strings.HasSuffix(c.Prefix, "/") {
		return fmt.Errorf("sharedlock: Prefix %q must end with /", c.Prefix)
	}
	if c.MinTTL < time.Second || c.MaxTTL < c.MinTTL {
		return fmt.Errorf("sharedlock: TTL bounds %s..%s", c.MinTTL, c.MaxTTL)
	}
	return nil
}
