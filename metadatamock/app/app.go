// Package app is the metadata-mock binary.
package app

import (
	"io"
	"net"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/internal/service"
	"github.com/process-wrapper/process-wrapper/metadatamock"
)

type options struct {
	Listen         string `name:"listen" default:":8989" help:"Address to serve on."`
	service.Common `embed:""`
}

// Main serves until SIGTERM or SIGINT.
func Main(args []string, stdout io.Writer) int {
	log := logline.NewLogger(logline.NewOutput(stdout), "metadata-mock")
	var o options
	if done, code := service.Run("metadata-mock", "A GCE metadata server stand-in: instance/preempted and instance/maintenance-event, with a control API.", args, &o, &o.Common, stdout, log); done {
		return code
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		log.Error("cannot listen", "address", o.Listen, "err", err)
		return 2
	}
	log.Info("serving", "address", ln.Addr().String(), "preempted", metadatamock.PreemptedPath)
	if err := service.Serve(ln, metadatamock.New().Handler(), log); err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	return 0
}
