// Package app wires the wrapper together: command line, config, reaper,
// supervisor and signals. cmd/process-wrapper only calls Main.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/internal/version"
	"github.com/process-wrapper/process-wrapper/prommerge"
	"github.com/process-wrapper/process-wrapper/wrapper/cli"
	"github.com/process-wrapper/process-wrapper/wrapper/config"
	"github.com/process-wrapper/process-wrapper/wrapper/ctl"
	"github.com/process-wrapper/process-wrapper/wrapper/health"
	"github.com/process-wrapper/process-wrapper/wrapper/install"
	"github.com/process-wrapper/process-wrapper/wrapper/relay"
	"github.com/process-wrapper/process-wrapper/wrapper/signals"
	"golang.org/x/sys/unix"
)

// exitIdle is how long the exit waits for a stdout that does not move any
// more, to write the wrapper's last lines; with the supervisor's own wait
// for the processes' last lines, the wrapper exits within about a second
// of its processes' end whatever its stdout does.
const exitIdle = 200 * time.Millisecond

// ExitUsage is the exit code for a bad command line, environment or config:
// nothing was started.
const ExitUsage = 2

// Main runs the wrapper with args (without the program name) and returns its
// exit code.
func Main(args []string, stdout io.Writer) int {
	if f, ok := stdout.(*os.File); ok {
		stdout = logline.Pollable(f)
	}
	out := logline.NewOutput(stdout)
	log := logline.NewLogger(out, "process-wrapper")
	if len(args) > 0 && args[0] == "ctl" {
		signals.Release() // a one-shot command: Ctrl-C ends it
		return ctl.Main(args[1:], stdout, os.Stderr)
	}
	check := len(args) > 0 && args[0] == "check"
	if check {
		args = args[1:]
	}
	exitCalled := -1
	opts, err := cli.Parse(args, func(code int) { exitCalled = code })
	if exitCalled >= 0 { // --help was printed
		return exitCalled
	}
	if err != nil {
		log.Error("bad command line", "err", err)
		return ExitUsage
	}
	if opts.Version {
		fmt.Fprintln(stdout, version.String("process-wrapper"))
		return 0
	}
	log.SetDebug(opts.Debug)
	if check {
		signals.Release() // a one-shot command: Ctrl-C ends it
		return checkMode(opts, stdout, log)
	}
	if !opts.Dumpable {
		// not dumpable: a process of the wrapper's uid without
		// CAP_SYS_PTRACE cannot read /proc/<wrapper>/environ (CONFIG and
		// the probe passwords stay in the initial environ block whatever
		// the processes are given) nor ptrace it; the README lists what
		// this costs and -dumpable
		if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
			log.Warn("cannot make the wrapper non-dumpable: processes of its uid can read its environment", "err", err)
		}
	}
	for _, f := range opts.CmdlineSecrets() {
		log.Warn("a password on the command line is readable by anyone in /proc/<pid>/cmdline: give the URL with the -file form", "flag", f)
	}
	if err := ensureEmptySigmask(); err != nil {
		log.Warn("children may inherit a blocked signal mask", "err", err)
	}
	if opts.Install != "" || opts.Wait {
		// a one-shot command, not a supervisor: signals act as on any
		// program (Ctrl-C ends a -wait)
		signals.Release()
	}
	if opts.Install != "" {
		if err := install.Binaries(opts.Install, log); err != nil {
			log.Error("cannot install", "dir", opts.Install, "err", err)
			return 1
		}
		return 0
	}
	if opts.Wait {
		return waitMode(opts, log)
	}
	format, err := relay.ParseFormat(os.Getenv("LOG_FORMAT"))
	if err != nil {
		log.Error("bad environment", "err", err)
		return ExitUsage
	}
	for _, name := range []string{"HANDLE_PREEMPTION", "HANDLE_TERMINATION"} {
		if _, err := envBool(name); err != nil {
			log.Error("bad environment", "err", err)
			return ExitUsage
		}
	}
	procs, _, err := loadConfig(opts, log, func(src string, data []byte) ([]config.Process, []error, error) {
		procs, err := config.Parse(src, data)
		return procs, nil, err
	})
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			log.Error("bad config", "err", line)
		}
		return ExitUsage
	}
	procs = config.Skip(procs, opts.SkipCommands, log)
	if opts.SharedLock {
		p, err := sharedLockProcess(procs)
		if err != nil {
			log.Error("bad environment", "err", err)
			return ExitUsage
		}
		procs = append(procs, p)
	}
	if len(procs) == 0 {
		log.Warn("no process left to run after -skip-commands")
		return 0
	}
	return runWrapper(opts, procs, format, out, log)
}

// loadConfig reads the config of -config, or of CONFIG, with parse.
func loadConfig(opts *cli.Options, log *logline.Logger, parse func(string, []byte) ([]config.Process, []error, error)) ([]config.Process, []error, error) {
	if opts.Config != "" {
		data, err := os.ReadFile(opts.Config)
		if err != nil {
			return nil, nil, fmt.Errorf("config: %w", err)
		}
		if os.Getenv("CONFIG") != "" {
			log.Info("both -config and CONFIG are set: using -config", "config", opts.Config)
		}
		return parse(opts.Config, data)
	}
	if env := os.Getenv("CONFIG"); env != "" {
		return parse("CONFIG", []byte(env))
	}
	return nil, nil, errors.New("no config: give -config FILE or the CONFIG environment variable (JSON)")
}

// mergeTargets are the processes' metrics endpoints, on loopback, in
// config order: /prommerge scrapes them.
func mergeTargets(procs []config.Process) []prommerge.Target {
	var t []prommerge.Target
	for _, p := range procs {
		if p.Metrics != nil {
			t = append(t, prommerge.Target{Name: p.Name, URL: fmt.Sprintf("http://127.0.0.1:%d%s", p.Metrics.Port, p.Metrics.Path)})
		}
	}
	return t
}

// waitMode is -wait: exit 0 as soon as the wrapper serving -http-address on
// this host is ready, 1 with the reason at -wait-deadline.
func waitMode(opts *cli.Options, log *logline.Logger) int {
	base, err := health.LocalURL(opts.HTTPAddress)
	if err != nil {
		log.Error("bad command line", "err", err)
		return ExitUsage
	}
	began := time.Now()
	if err := health.WaitReady(context.Background(), base, opts.WaitDeadline); err != nil {
		log.Error("the wrapper is not ready", "url", base+"/readiness", "err", err)
		return 1
	}
	log.Info("the wrapper is ready", "url", base+"/readiness", "waited", time.Since(began).Round(time.Millisecond).String())
	return 0
}

// sharedLockProcess is the shared-lock server run by -shared-lock: the
// shared-lock binary (beside the wrapper, or in PATH) as one more process,
// a client of the etcd of SHARED_LEASE_ETCD_ENDPOINTS. It runs as a process
// rather than inside the wrapper so that the wrapper, injected into other
// images, links no etcd or gRPC code (see the README).
func sharedLockProcess(procs []config.Process) (config.Process, error) {
	endpoints := os.Getenv("SHARED_LEASE_ETCD_ENDPOINTS")
	if endpoints == "" {
		return config.Process{}, errors.New("-shared-lock needs SHARED_LEASE_ETCD_ENDPOINTS (the etcd cluster the server uses)")
	}
	for _, p := range procs {
		if p.Name == "shared-lock" {
			return config.Process{}, errors.New("-shared-lock adds a process named shared-lock, and the config has one already")
		}
	}
	bin := "shared-lock"
	if exe, err := os.Executable(); err == nil {
		if beside := filepath.Join(filepath.Dir(exe), "shared-lock"); fileExists(beside) {
			bin = beside
		}
	}
	if !strings.Contains(bin, "/") {
		if _, err := exec.LookPath(bin); err != nil {
			return config.Process{}, fmt.Errorf("-shared-lock: the shared-lock binary is neither beside the wrapper nor in PATH")
		}
	}
	socket := os.Getenv("SHARED_LEASE_SOCKET")
	if socket == "" {
		socket = ":8191"
	}
	_, port, err := net.SplitHostPort(socket)
	if err != nil {
		return config.Process{}, fmt.Errorf("SHARED_LEASE_SOCKET %q: %w", socket, err)
	}
	portNum, _ := strconv.Atoi(port)
	env := []config.KV{{Key: "SHARED_LEASE_ETCD_ENDPOINTS", Value: endpoints}, {Key: "SHARED_LEASE_SOCKET", Value: socket}}
	if f := os.Getenv("SHARED_LEASE_TOKEN_FILE"); f != "" {
		env = append(env, config.KV{Key: "SHARED_LEASE_TOKEN_FILE", Value: f})
	}
	return config.Process{
		Name:          "shared-lock",
		Argv:          []string{bin},
		Env:           env,
		RestartPolicy: config.Always,
		StopSignal:    syscall.SIGTERM,
		Metrics:       &config.Metrics{Port: portNum, Path: "/metrics"},
		Readiness: &config.Probe{Kind: "http", Period: 2 * time.Second, Timeout: 2 * time.Second, SuccessThreshold: 1, FailureThreshold: 3,
			Check: config.Check{HTTP: &config.HTTPCheck{URL: fmt.Sprintf("http://127.0.0.1:%d/healthz", portNum), Method: "GET",
				ExpectedStatus: "200", StatusRanges: [][2]int{{200, 200}}}}},
	}, nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// envBool reads a true/false environment variable; empty is false.
func envBool(name string) (bool, error) {
	v := os.Getenv(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: want true or false, got %q", name, v)
	}
	return b, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
