// Package app is the metrics-mock binary.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/internal/version"
	"github.com/process-wrapper/process-wrapper/metricsmock"
)

type options struct {
	UDP     string `name:"udp" default:":9999" help:"UDP address the events arrive on."`
	HTTP    string `name:"http" default:":9998" help:"HTTP address of /events and /metrics."`
	Keep    int    `name:"keep" default:"10000" help:"How many events are kept."`
	Version bool   `name:"version" help:"Print the version and exit."`
}

// Main serves until SIGTERM or SIGINT.
func Main(args []string, stdout io.Writer) int {
	log := logline.NewLogger(logline.NewOutput(stdout), "metrics-mock")
	var o options
	code := -1
	p, err := kong.New(&o, kong.Name("metrics-mock"), kong.Exit(func(c int) { code = c }),
		kong.Description("Records the lifecycle events process-wrapper sends over UDP and serves them over HTTP."))
	if err != nil {
		log.Error("command line model", "err", err)
		return 2
	}
	for i, a := range args {
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
		fmt.Fprintln(stdout, version.String("metrics-mock"))
		return 0
	}
	pc, err := net.ListenPacket("udp", o.UDP)
	if err != nil {
		log.Error("cannot listen", "udp", o.UDP, "err", err)
		return 2
	}
	ln, err := net.Listen("tcp", o.HTTP)
	if err != nil {
		log.Error("cannot listen", "http", o.HTTP, "err", err)
		return 2
	}
	rec := metricsmock.NewRecorder(o.Keep, log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); rec.ServeUDP(ctx, pc) }()
	srv := &http.Server{Handler: rec.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving", "udp", pc.LocalAddr().String(), "http", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "err", err)
		return 1
	}
	<-done
	return 0
}
