// Package service holds what the small binaries of process-wrapper share
// around their main: Go-style single-dash flags for kong, the parse itself,
// and serving HTTP until SIGTERM or SIGINT.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/version"

	"github.com/alecthomas/kong"
	"github.com/process-wrapper/process-wrapper/internal/logline"
)

// NormalizeFlags rewrites -name and -name=value into --name and
// --name=value, up to a "--" terminator, as Go's flag package accepted both
// and kong would read -name as short flags. The binaries have no positional
// arguments, so every single-dash word of more than one letter is a long
// flag; the word after a flag that takes a value (isBool false) is that
// value, left as it is (it may start with a dash).
func NormalizeFlags(args []string, isBool func(name string) bool) []string {
	out := make([]string, len(args))
	copy(out, args)
	for i := 0; i < len(out); i++ {
		a := out[i]
		if a == "--" {
			break
		}
		if len(a) < 2 || a[0] != '-' {
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if a[1] != '-' && len(name) > 1 {
			out[i] = "-" + a
		}
		if !hasValue && !isBool(name) {
			i++ // skip the value
		}
	}
	return out
}

// Common are the flags every small binary has; a binary's options embed it
// (`embed:""`).
type Common struct {
	Version bool `name:"version" help:"Print the version and exit."`
}

// commonBool tells the boolean flags of Common and kong's help.
func commonBool(name string) bool { return name == "version" || name == "help" || name == "h" }

// Run parses args into opts (which embeds Common) for the binary name, and
// prints the version for -version. done is true when the program must exit
// with code: help or version printed, or a bad command line, logged.
func Run(name, description string, args []string, opts any, common *Common, stdout io.Writer, log *logline.Logger) (done bool, code int) {
	if done, code := Parse(name, description, args, opts, commonBool, log); done {
		return done, code
	}
	if common.Version {
		fmt.Fprintln(stdout, version.String(name))
		return true, 0
	}
	return false, 0
}

// Parse parses args into opts with kong. done is true when the program
// must exit with code (help printed, or a bad command line, logged).
func Parse(name, description string, args []string, opts any, isBool func(string) bool, log *logline.Logger) (done bool, code int) {
	code = -1
	p, err := kong.New(opts, kong.Name(name), kong.Description(description), kong.Exit(func(c int) { code = c }))
	if err != nil {
		log.Error("command line model", "err", err)
		return true, 2
	}
	if _, err := p.Parse(NormalizeFlags(args, isBool)); err != nil {
		if code >= 0 { // --help
			return true, code
		}
		log.Error("bad command line", "err", err)
		return true, 2
	}
	if code >= 0 {
		return true, code
	}
	return false, 0
}

// Serve serves h on ln until SIGTERM or SIGINT, then shuts down within 5 s.
func Serve(ln net.Listener, h http.Handler, log *logline.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
