package cli

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	"github.com/alecthomas/kong"
)

// FlagHelp is a flag's placeholder (empty for a bool flag) and help text.
// The printer adds "(default X)" to the text of a flag that has one.
type FlagHelp struct{ Placeholder, Text string }

// flagHelp is the help of each of Options' flags (a test checks that each
// has one).
var flagHelp = map[string]FlagHelp{
	"control-socket":             {"PATH", "Unix socket of the control API (process-wrapper ctl), in a 0700 directory the wrapper makes; empty: none."},
	"control-address":            {"HOST:PORT", "Also serve the control API on TCP here; needs -control-token-file. The token crosses the pod network in clear."},
	"control-token-file":         {"FILE", "Bearer token that -control-address requires, read from this file."},
	"config":                     {"FILE", "Config file (YAML or JSON list of processes). Without it, the CONFIG environment variable holds the config as JSON."},
	"debug":                      {"", "Log the wrapper's debug messages."},
	"envoy-drain":                {"", "Drain envoy (ENVOY_DRAIN_URL) when the node is preempted."},
	"graceful-shutdown-deadline": {"", "After SIGTERM, how long processes have to exit before SIGKILL. Keep it below the pod's terminationGracePeriodSeconds."},
	"pyroscope-url":              {"URL", "Send continuous profiles of the wrapper to this Pyroscope server (a password in it is readable in /proc/PID/cmdline: use -pyroscope-url-file)."},
	"pyroscope-url-file":         {"FILE", "Read -pyroscope-url from this file (a mounted Secret)."},
	"dumpable":                   {"", "Keep the wrapper dumpable: processes of its uid can then read its environment (CONFIG, AMQP_PROBE_RABBITMQ_PASS) through /proc, and cmd > /proc/1/fd/1, /proc/1/root, core dumps and debuggers work."},
	"readiness-file":             {"FILE", "File written once every process is started and ready."},
	"install":                    {"DIR", "Injection: copy this binary (and shared-lock, when beside it) into DIR, then exit (an init container's command; a scratch image has no cp)."},
	"http-address":               {"HOST:PORT", "Address of /liveness, /readiness, /metrics and /prommerge."},
	"shared-lock":                {"", "Also run the shared-lock server, as one more process: the shared-lock binary beside the wrapper or in PATH (needs SHARED_LEASE_ETCD_ENDPOINTS)."},
	"shared-lock-url":            {"URL", "Shared-lock server that sharedLock processes take their lease from."},
	"shared-lock-token-file":     {"FILE", "Bearer token of the shared-lock server (its SHARED_LEASE_TOKEN_FILE), read from this file."},
	"shared-lock-url-file":       {"FILE", "Read -shared-lock-url from this file (a mounted Secret: a user:password in it stays out of /proc/PID/cmdline)."},
	"skip-commands":              {"NAME", "Names of processes of the config not to run (comma separated); an unknown name is a warning."},
	"version":                    {"", "Print the version and exit."},
	"wait":                       {"", "Client mode: wait until the wrapper on this host is ready, then exit 0."},
	"wait-deadline":              {"", "How long -wait (and /readiness?wait) waits."},
}

// printHelp is the wrapper's help: the flags, then the commands, the
// environment and the exit codes.
var printHelp = SingleDashHelp(helpEpilog, flagHelp)

// SingleDashHelp is kong's help in the single-dash form the README
// documents (both forms work; a space keeps the columns), followed by
// epilog; ctl's help is printed by it too. The flags named in texts get
// those, for a model whose tags hold none.
func SingleDashHelp(epilog string, texts map[string]FlagHelp) kong.HelpPrinter {
	return func(options kong.HelpOptions, ctx *kong.Context) error {
		for _, f := range ctx.Model.Flags {
			h, ok := texts[f.Name]
			if !ok {
				continue
			}
			f.PlaceHolder, f.Help = h.Placeholder, h.Text
			if f.Default != "" {
				f.Help = strings.TrimSuffix(f.Help, ".") + " (default " + f.Default + ")."
			}
		}
		out := ctx.Stdout
		var buf bytes.Buffer
		ctx.Stdout = &buf
		err := kong.DefaultHelpPrinter(options, ctx)
		ctx.Stdout = out
		if err != nil {
			return err
		}
		// a double-dash long flag, written with one
		longFlag := regexp.MustCompile(`(^|[\s,(])--([a-z])`)
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
