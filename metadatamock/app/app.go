// Package app is the metadata-mock binary.
package app

import (
	"fmt"
	"io"
	"net"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/internal/service"
	"github.com/process-wrapper/process-wrapper/internal/version"
	"github.com/process-wrapper/process-wrapper/metadatamock"
)

type options struct {
	Listen  string `name:"listen" default:":8989" help:"Address to serve on."`
	Version bool   `name:"version" help:"Print the version and exit."`
}

func isBool(name string) bool { return name == "version" || name == "help" || name == "h" }

// Main serves until SIGTERM or SIGINT.
func Main(args []string, stdout io.Writer) int {
	log := logline.NewLogger(logline.NewOutput(stdout), "metadata-mock")
	var o options
	if done, code := service.Parse("metadata-mock", "A GCE metadata server stand-in: instance/preempted and instance/maintenance-event, with a control API.", args, &o, isBool, log); done {
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
	log.Info("serving", "address", ln.Addr().String(), "preempted", metadatamock.PreemptedPath)
	if err := service.Serve(ln, metadatamock.New().Handler(), log); err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	return 0
}
