// Package app is the metrics-mock binary.
package app

import (
	"context"
	"io"
	"net"
	"os/signal"
	"syscall"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/internal/service"
	"github.com/process-wrapper/process-wrapper/metricsmock"
)

type options struct {
	UDP            string `name:"udp" default:":9999" help:"UDP address the events arrive on."`
	HTTP           string `name:"http" default:":9998" help:"HTTP address of /events and /metrics."`
	Keep           int    `name:"keep" default:"10000" help:"How many events are kept."`
	service.Common `embed:""`
}

// Main serves until SIGTERM or SIGINT.
func Main(args []string, stdout io.Writer) int {
	log := logline.NewLogger(logline.NewOutput(stdout), "metrics-mock")
	var o options
	if done, code := service.Run("metrics-mock", "Records the lifecycle events process-wrapper sends over UDP and serves them over HTTP.", args, &o, &o.Common, stdout, log); done {
		return code
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
	log.Info("serving", "udp", pc.LocalAddr().String(), "http", ln.Addr().String())
	err = service.Serve(ln, rec.Handler(), log)
	stop()
	<-done
	if err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	return 0
}
