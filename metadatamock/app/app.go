// Package app is the metadata-mock binary.
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
	"github.com/process-wrapper/process-wrapper/metadatamock"
)

type options struct {
	Listen  string `name:"listen" default:":8989" help:"Address to serve on."`
	Version bool   `name:"version" help:"Print the version and exit."`
}

// Main serves until SIGTERM or SIGINT.
func Main(args []string, stdout io.Writer) int {
	log := logline.NewLogger(logline.NewOutput(stdout), "metadata-mock")
	var o options
	code := -1
	p, err := kong.New(&o, kong.Name("metadata-mock"), kong.Exit(func(c int) { code = c }),
		kong.Description("A GCE metadata server stand-in: instance/preempted and instance/maintenance-event, with a control API."))
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
		fmt.Fprintln(stdout, version.String("metadata-mock"))
		return 0
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		log.Error("cannot listen", "address", o.Listen, "err", err)
		return 2
	}
	srv := &http.Server{Handler: metadatamock.New().Handler(), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving", "address", ln.Addr().String(), "preempted", metadatamock.PreemptedPath)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "err", err)
		return 1
	}
	return 0
}
