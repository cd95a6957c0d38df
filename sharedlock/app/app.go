// Package app is the shared-lock binary: flags, signals, the HTTP listener.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/internal/version"
	"github.com/process-wrapper/process-wrapper/sharedlock"
)

type options struct {
	DataDir   string `name:"data-dir" default:"shared-lock.etcd" help:"Data directory of the embedded etcd (used when SHARED_LEASE_ETCD_ENDPOINTS is not set)."`
	ClientURL string `name:"etcd-client-url" default:"http://127.0.0.1:2379" help:"Client URL of the embedded etcd."`
	PeerURL   string `name:"etcd-peer-url" default:"http://127.0.0.1:2380" help:"Peer URL of the embedded etcd."`
	Version   bool   `name:"version" help:"Print the version and exit."`
}

// Main runs the server until SIGTERM or SIGINT and returns the exit code.
func Main(args []string, stdout io.Writer) int {
	log := logline.NewLogger(logline.NewOutput(stdout), "shared-lock")
	var o options
	code := -1
	p, err := kong.New(&o, kong.Name("shared-lock"), kong.Exit(func(c int) { code = c }),
		kong.Description("Named locks with a TTL, held by etcd leases that live only as long as their holder renews them."))
	if err != nil {
		log.Error("command line model", "err", err)
		return 2
	}
	for i, a := range args { // Go-style single-dash long flags, as the wrapper accepts them
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			args[i] = "-" + a
		}
	}
	if _, err := p.Parse(args); err != nil || code >= 0 {
		if err != nil {
			log.Error("bad command line", "err", err)
			return 2
		}
		return code
	}
	if o.Version {
		fmt.Fprintln(stdout, version.String("shared-lock"))
		return 0
	}
	cfg := sharedlock.DefaultConfig()
	cfg.DataDir, cfg.EmbeddedClientURL, cfg.EmbeddedPeerURL = o.DataDir, o.ClientURL, o.PeerURL
	cfg.FromEnv()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		log.Error("cannot listen", "address", cfg.Listen, "err", err)
		return 2
	}
	srv, err := sharedlock.New(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	defer srv.Close()
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	log.Info("serving", "address", ln.Addr().String(), "version", version.String("shared-lock"))
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "err", err)
		return 1
	}
	log.Info("stopped")
	_ = os.Stdout.Sync()
	return 0
}
