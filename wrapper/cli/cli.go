// Package cli holds the wrapper's command line: the kong model, and the
// normalisation that keeps Go-flag style single-dash long flags (-config x,
// -wait) working beside the double-dash form (--config x).
package cli

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/secret"
	"github.com/process-wrapper/process-wrapper/internal/service"

	"github.com/alecthomas/kong"
)

// Options is the parsed command line. Each flag's help and placeholder are
// in flagHelp, not in its tag: kong parses every tag and interpolates every
// string of its model at each start, and help is only needed with -help.
type Options struct {
	ControlSocket            string        `name:"control-socket" default:"/run/process-wrapper/control/socket"`
	ControlAddress           string        `name:"control-address"`
	ControlToken             string        `kong:"-"` // read from ControlTokenFile
	ControlTokenFile         string        `name:"control-token-file"`
	Config                   string        `name:"config"`
	Debug                    bool          `name:"debug"`
	EnvoyDrain               bool          `name:"envoy-drain"`
	GracefulShutdownDeadline time.Duration `name:"graceful-shutdown-deadline" default:"10s"`
	PyroscopeURL             string        `name:"pyroscope-url"`
	PyroscopeURLFile         string        `name:"pyroscope-url-file"`
	Dumpable                 bool          `name:"dumpable"`
	ReadinessFile            string        `name:"readiness-file" default:"/tmp/started"`
	Install                  string        `name:"install"`
	HTTPAddress              string        `name:"http-address" default:"0.0.0.0:8111"`
	SharedLock               bool          `name:"shared-lock"`
	SharedLockURL            string        `name:"shared-lock-url" default:"http://localhost:8191"`
	SharedLockToken          string        `kong:"-"` // read from SharedLockTokenFile
	SharedLockTokenFile      string        `name:"shared-lock-token-file"`
	SharedLockURLFile        string        `name:"shared-lock-url-file"`
	SkipCommands             []string      `name:"skip-commands" sep:","`
	Version                  bool          `name:"version"`
	Wait                     bool          `name:"wait"`
	WaitDeadline             time.Duration `name:"wait-deadline" default:"2m0s"`
}

// DefaultControlSocket is -control-socket's default (written out in its
// tag, which a test checks): in a directory of its own that the wrapper
// makes 0700, under /run/process-wrapper (the chart mounts an emptyDir
// there).
const DefaultControlSocket = "/run/process-wrapper/control/socket"

// boolFlags take no value; every other long flag takes one.
var boolFlags = map[string]bool{"dumpable": true, "debug": true, "envoy-drain": true, "shared-lock": true, "version": true, "wait": true, "help": true, "h": true}

// Normalize rewrites Go-style single-dash long flags (-config x) into the
// double-dash form kong reads (see service.NormalizeFlags).
func Normalize(args []string) []string {
	return service.NormalizeFlags(args, func(name string) bool { return boolFlags[name] })
}

// Parse reads args (without the program name). It returns the kong context
// error for bad flags, naming the flag.
func Parse(args []string, exit func(int)) (*Options, error) {
	var o Options
	p, err := kong.New(&o,
		kong.Name("process-wrapper"),
		kong.Description("Runs several processes in one container: restarts them, probes them, relays their logs as logfmt, and tells kubelet the truth about each."),
		kong.Exit(exit),
		kong.Help(printHelp),
	)
	if err != nil {
		return nil, fmt.Errorf("command line model: %w", err)
	}
	if _, err := p.Parse(Normalize(args)); err != nil {
		return nil, err
	}
	if o.SharedLock && o.SharedLockTokenFile == "" {
		// -shared-lock: the wrapper's client uses the token of the server it runs
		o.SharedLockTokenFile = os.Getenv("SHARED_LEASE_TOKEN_FILE")
	}
	for _, f := range o.fileForms() {
		if f.file == "" {
			continue
		}
		if f.set {
			return nil, fmt.Errorf("-%s and -%s-file: give one", f.flag, f.flag)
		}
		if *f.v, err = secret.Read("-"+f.flag+"-file", f.file); err != nil {
			return nil, err
		}
	}
	if o.ControlAddress != "" && o.ControlToken == "" {
		// fail closed: no TCP listener without its token
		return nil, errors.New("-control-address needs -control-token-file: a readable, non-empty file holding the bearer token")
	}
	return &o, nil
}

// CmdlineSecrets names the flags given on the command line whose value
// holds a password, which anyone can read in /proc/PID/cmdline.
func (o *Options) CmdlineSecrets() []string {
	var flags []string
	for _, f := range o.fileForms() {
		if f.file != "" {
			continue
		}
		if u, err := url.Parse(*f.v); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				flags = append(flags, "-"+f.flag)
			}
		}
	}
	return flags
}

// fileForm is a flag that may instead be read from a file (-FLAG-file).
type fileForm struct {
	flag, file string
	v          *string
	set        bool // also given on the command line
}

func (o *Options) fileForms() []fileForm {
	return []fileForm{
		{"pyroscope-url", o.PyroscopeURLFile, &o.PyroscopeURL, o.PyroscopeURL != ""},
		{"shared-lock-url", o.SharedLockURLFile, &o.SharedLockURL, o.SharedLockURL != "http://localhost:8191"},
		{"shared-lock-token", o.SharedLockTokenFile, &o.SharedLockToken, false},
		{"control-token", o.ControlTokenFile, &o.ControlToken, false},
	}
}
