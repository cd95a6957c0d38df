// Package app is the shared-lock binary: flags, signals, the HTTP listener.
package app

import (
	"io"
	"net"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/internal/service"
	"github.com/process-wrapper/process-wrapper/internal/version"
	"github.com/process-wrapper/process-wrapper/sharedlock"
)

type options struct {
	DataDir        string `name:"data-dir" default:"shared-lock.etcd" help:"Data directory of the embedded etcd (used when SHARED_LEASE_ETCD_ENDPOINTS is not set)."`
	ClientURL      string `name:"etcd-client-url" default:"http://127.0.0.1:2379" help:"Client URL of the embedded etcd."`
	PeerURL        string `name:"etcd-peer-url" default:"http://127.0.0.1:2380" help:"Peer URL of the embedded etcd."`
	service.Common `embed:""`
}

// Main runs the server until SIGTERM or SIGINT and returns the exit code.
func Main(args []string, stdout io.Writer) int {
	log := logline.NewLogger(logline.NewOutput(stdout), "shared-lock")
	var o options
	if done, code := service.Run("shared-lock", "Named locks with a TTL, held by etcd leases that live only as long as their holder renews them.", args, &o, &o.Common, stdout, log); done {
		return code
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
	log.Info("serving", "address", ln.Addr().String(), "version", version.String("shared-lock"))
	if err := service.Serve(ln, srv.Handler(), log); err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}
