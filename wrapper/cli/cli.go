// Package cli holds the wrapper's command line: the kong model, and the
// normalisation that keeps Go-flag style single-dash long flags (-config x,
// -wait) working beside the double-dash form (--config x).
package cli

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/service"

	"github.com/alecthomas/kong"
)

// Options is the parsed command line.
type Options struct {
	ControlSocket            string        `name:"control-socket" default:"${controlSocket}" help:"Unix socket of the control API (process-wrapper ctl), in a 0700 directory the wrapper makes; empty: none (default ${default})." placeholder:"PATH"`
	ControlAddress           string        `name:"control-address" help:"Also serve the control API on TCP here; needs -control-token-file. The token crosses the pod network in clear." placeholder:"HOST:PORT"`
	ControlToken             string        `kong:"-"` // read from ControlTokenFile
	ControlTokenFile         string        `name:"control-token-file" help:"Bearer token that -control-address requires, read from this file." placeholder:"FILE"`
	Config                   string        `name:"config" help:"Config file (YAML or JSON list of processes). Without it, the CONFIG environment variable holds the config as JSON." placeholder:"FILE"`
	Debug                    bool          `name:"debug" help:"Log the wrapper's debug messages."`
	EnvoyDrain               bool          `name:"envoy-drain" help:"Drain envoy (ENVOY_DRAIN_URL) when the node is preempted."`
	GracefulShutdownDeadline time.Duration `name:"graceful-shutdown-deadline" default:"10s" help:"After SIGTERM, how long processes have to exit before SIGKILL. Keep it below the pod's terminationGracePeriodSeconds (default ${default})."`
	PyroscopeURL             string        `name:"pyroscope-url" help:"Send continuous profiles of the wrapper to this Pyroscope server (a password in it is readable in /proc/PID/cmdline: use -pyroscope-url-file)." placeholder:"URL"`
	PyroscopeURLFile         string        `name:"pyroscope-url-file" help:"Read -pyroscope-url from this file (a mounted Secret)." placeholder:"FILE"`
	Dumpable                 bool          `name:"dumpable" help:"Keep the wrapper dumpable: processes of its uid can then read its environment (CONFIG, AMQP_PROBE_RABBITMQ_PASS) through /proc, and cmd > /proc/1/fd/1, /proc/1/root, core dumps and debuggers work."`
	ReadinessFile            string        `name:"readiness-file" default:"/tmp/started" help:"File written once every process is started and ready (default ${default})." placeholder:"FILE"`
	Install                  string        `name:"install" help:"Injection: copy this binary (and shared-lock, when beside it) into DIR, then exit (an init container's command; a scratch image has no cp)." placeholder:"DIR"`
	HTTPAddress              string        `name:"http-address" default:"0.0.0.0:8111" help:"Address of /liveness, /readiness, /metrics and /prommerge (default ${default})." placeholder:"HOST:PORT"`
	SharedLock               bool          `name:"shared-lock" help:"Also run the shared-lock server, as one more process: the shared-lock binary beside the wrapper or in PATH (needs SHARED_LEASE_ETCD_ENDPOINTS)."`
	SharedLockURL            string        `name:"shared-lock-url" default:"http://localhost:8191" help:"Shared-lock server that sharedLock processes take their lease from (default ${default})." placeholder:"URL"`
	SharedLockToken          string        `kong:"-"` // read from SharedLockTokenFile
	SharedLockTokenFile      string        `name:"shared-lock-token-file" help:"Bearer token of the shared-lock server (its SHARED_LEASE_TOKEN_FILE), read from this file." placeholder:"FILE"`
	SharedLockURLFile        string        `name:"shared-lock-url-file" help:"Read -shared-lock-url from this file (a mounted Secret: a user:password in it stays out of /proc/PID/cmdline)." placeholder:"FILE"`
	SkipCommands             []string      `name:"skip-commands" sep:"," help:"Names of processes of the config not to run (comma separated); an unknown name is a warning." placeholder:"NAME"`
	Version                  bool          `name:"version" help:"Print the version and exit."`
	Wait                     bool          `name:"wait" help:"Client mode: wait until the wrapper on this host is ready, then exit 0."`
	WaitDeadline             time.Duration `name:"wait-deadline" default:"2m0s" help:"How long -wait (and /readiness?wait) waits (default ${default})."`
}

// DefaultControlSocket is -control-socket's default: in a directory of its
// own that the wrapper makes 0700, under /run/process-wrapper (the chart
// mounts an emptyDir there).
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
		kong.Vars{"controlSocket": DefaultControlSocket},
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
		b, err := os.ReadFile(f.file)
		if err != nil {
			return nil, fmt.Errorf("-%s-file: %w", f.flag, err)
		}
		if *f.v = strings.TrimSpace(string(b)); *f.v == "" {
			return nil, fmt.Errorf("-%s-file %s is empty", f.flag, f.file)
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

// longFlag is a double-dash long flag in kong's help.
var longFlag = regexp.MustCompile(`(^|[\s,(])--([a-z])`)

// printHelp is the wrapper's help: the flags, then the commands, the
// environment and the exit codes.
var printHelp = SingleDashHelp(helpEpilog)

// SingleDashHelp is kong's help in the single-dash form the README
// documents (both forms work; a space keeps the columns), followed by
// epilog; ctl's help is printed by it too.
func SingleDashHelp(epilog string) kong.HelpPrinter {
	return func(options kong.HelpOptions, ctx *kong.Context) error {
		out := ctx.Stdout
		var buf bytes.Buffer
		ctx.Stdout = &buf
		err := kong.DefaultHelpPrinter(options, ctx)
		ctx.Stdout = out
		if err != nil {
			return err
		}
		fmt.Fprint(out, longFlag.ReplaceAllString(buf.String(), "$1 -$2"))
		fmt.Fprint(out, epilog)
		return nil
	}
}

const helpEpilog = `
Flags take one dash or two: -config f.yaml and --config f.yaml are the same.

Commands:
  process-wrapper check -config F  validate the config without starting anything; print the start order
                                   (exit 0, or 2 with every error)
  process-wrapper ctl ...          the control API's client: status, start, stop, restart, signal, logs
                                   (process-wrapper ctl -help)

Environment (not passed to the processes where it configures the wrapper):
  CONFIG                           the config as JSON, when there is no -config
  LOG_FORMAT                       logfmt (default), free (lines untouched), auto (level from the line)
  POD_NAMESPACE, NODE_NAME         the pod's (downward API), for events and HANDLE_TERMINATION
  HANDLE_PREEMPTION, METADATA_URL  follow GCE preemption (metadata server URL)
  ENVOY_DRAIN_URL                  envoy's drain endpoint, with -envoy-drain
  HANDLE_TERMINATION               end when the pod's other containers have ended
  METRICS_SERVER_ADDRESS           UDP host:port of the lifecycle events
  METRICS_JSON_EXTRA_LABELS, METRICS_EXTRA_LABELS_FILE_PATH, METRICS_EXTRA_LABELS_FILE_EXCLUDE
                                   labels added to the events
  SHARED_LEASE_SOCKET, SHARED_LEASE_ETCD_ENDPOINTS
                                   the shared-lock server of -shared-lock
  AMQP_PROBE_RABBITMQ_DSN_TEMPLATE, AMQP_PROBE_RABBITMQ_USER, AMQP_PROBE_RABBITMQ_PASS
                                   defaults of the amqp probes

Exit codes:
  0    every process ended with 0 (also -version, -help, -install, a ready -wait)
  N    otherwise the code of the first process that did not: 128+S for a process ended
       by signal S (137: killed at the deadline; 143: ended by SIGTERM, or never
       started because SIGTERM came first)
  1    -wait: not ready within -wait-deadline; -install failed
  2    bad command line, environment or config: nothing was started
`
