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
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/internal/version"
	"github.com/process-wrapper/process-wrapper/prommerge"
	"github.com/process-wrapper/process-wrapper/wrapper/cli"
	"github.com/process-wrapper/process-wrapper/wrapper/config"
	"github.com/process-wrapper/process-wrapper/wrapper/events"
	"github.com/process-wrapper/process-wrapper/wrapper/health"
	"github.com/process-wrapper/process-wrapper/wrapper/hook"
	"github.com/process-wrapper/process-wrapper/wrapper/install"
	"github.com/process-wrapper/process-wrapper/wrapper/lockclient"
	"github.com/process-wrapper/process-wrapper/wrapper/metrics"
	"github.com/process-wrapper/process-wrapper/wrapper/pageout"
	"github.com/process-wrapper/process-wrapper/wrapper/podwatch"
	"github.com/process-wrapper/process-wrapper/wrapper/preempt"
	"github.com/process-wrapper/process-wrapper/wrapper/probe"
	"github.com/process-wrapper/process-wrapper/wrapper/profile"
	"github.com/process-wrapper/process-wrapper/wrapper/reaper"
	"github.com/process-wrapper/process-wrapper/wrapper/relay"
	"github.com/process-wrapper/process-wrapper/wrapper/signals"
	"github.com/process-wrapper/process-wrapper/wrapper/state"
	"github.com/process-wrapper/process-wrapper/wrapper/supervisor"
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
	return run(opts, procs, format, out, log)
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

func run(opts *cli.Options, procs []config.Process, format relay.Format, out *logline.Output, log *logline.Logger) int {
	// The wrapper's own lines wait in a bounded queue from here on: no
	// control path (shutdown, restarts, probes, endpoints) waits for a
	// blocked stdout. At the exit what is queued is written, unless stdout
	// has stopped moving (see logline.Logger.Close).
	log.Async()
	defer log.Close(exitIdle)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Every signal the wrapper acts on has been taken since package signals'
	// initialiser (a child starts with the default disposition of each of
	// them, as Go resets handled signals at exec). No signal.Stop at the
	// end: it waits for the signal machinery to go idle (milliseconds), and
	// the wrapper exits right after run returns.
	sigs := signals.Incoming()

	names := make([]string, len(procs))
	for i, p := range procs {
		names[i] = p.Name
	}
	st := state.New(names)
	met := metrics.New(st)
	metrics.RegisterLogger(met.Registry(), log)
	observers := events.Observers{met}
	sendCfg, err := events.ConfigFromEnv(os.Getenv)
	if err != nil {
		log.Error("bad environment", "err", err)
		return ExitUsage
	}
	var sender *events.Sender
	if sendCfg.Address != "" {
		sender = events.NewSender(sendCfg, log)
		metrics.RegisterSender(met.Registry(), sender)
		observers = append(observers, sender)
	}

	rp := reaper.New()
	rp.OnOrphan = func(e reaper.Exit) { met.Orphan(e.Pid, &e.Rusage) }
	reaps, err := reaper.BecomeSubreaper()
	if err != nil {
		log.Warn("cannot become a child subreaper: orphans of the processes will not be reaped by the wrapper", "err", err)
	}
	reaperDone := make(chan struct{})
	go func() { defer close(reaperDone); rp.Run(ctx) }()
	defer func() { cancel(); <-reaperDone }()

	// every process's pipes are waited on by one poller, until the exit
	poller, err := relay.NewPoller()
	if err != nil {
		log.Error("cannot relay the processes' output", "err", err)
		return 1
	}
	pollCtx, stopPoll := context.WithCancel(context.Background())
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		if err := poller.Run(pollCtx); err != nil {
			log.Error("the log relay's poller failed", "err", err)
		}
	}()
	// a stdout that has stopped moving holds the poller in a write that
	// never returns: the exit then goes on without it
	defer func() { stopPoll(); out.WaitIdle(pollDone, exitIdle) }()

	locks := lockclient.New(opts.SharedLockURL)
	locks.Token = opts.SharedLockToken
	beats := probe.NewBeats()
	readyFile := &health.ReadinessFile{Path: opts.ReadinessFile, Log: log}
	// an envoy drain in progress is abandoned when the shutdown begins
	drainCtx, stopDrain := context.WithCancel(ctx)
	defer stopDrain()
	sup, err := supervisor.New(supervisor.Options{
		Processes:  procs,
		Reaper:     rp,
		State:      st,
		Log:        log,
		Out:        out,
		Format:     format,
		Poller:     poller,
		Environ:    os.Environ(),
		Deadline:   opts.GracefulShutdownDeadline,
		Reaps:      reaps,
		Locks:      locks,
		Beats:      beats,
		Observer:   observers,
		AMQP:       probe.AMQPDefaults{DSNTemplate: os.Getenv("AMQP_PROBE_RABBITMQ_DSN_TEMPLATE"), User: os.Getenv("AMQP_PROBE_RABBITMQ_USER"), Pass: os.Getenv("AMQP_PROBE_RABBITMQ_PASS")},
		BeforeStop: func() { readyFile.Remove(); stopDrain() },
	})
	if err != nil {
		log.Error("bad config", "err", err)
		return ExitUsage
	}
	ln, err := health.Listen(opts.HTTPAddress)
	if err != nil {
		log.Error("cannot serve the health endpoints", "err", err)
		return ExitUsage
	}
	hs := &health.Server{State: st, Beats: beats, WaitDeadline: opts.WaitDeadline, Log: log, NotReady: met.ReadinessFailed, WaitRefused: met.WaitRefused}
	hooks := &hook.Runner{Reaper: rp, State: st, Log: log, Environ: sup.Environ, Observer: observers}
	for _, p := range procs {
		hooks.Hooks = append(hooks.Hooks, p.PostStart...)
	}
	if len(hooks.Hooks) > 0 {
		st.SetGate(hook.Gate)
	}
	var bg sync.WaitGroup // goroutines that end with ctx
	defer bg.Wait()
	defer cancel()
	if handle, _ := envBool("HANDLE_PREEMPTION"); handle {
		w := &preempt.Watcher{URL: envOr("METADATA_URL", preempt.DefaultMetadataURL), Log: log}
		w.OnPreempted = func() {
			st.SetPreempted()
			observers.Observe(&events.Event{Kind: events.Preemption, Reason: "the metadata server says the instance is preempted"})
			if opts.EnvoyDrain {
				preempt.DrainEnvoy(drainCtx, envOr("ENVOY_DRAIN_URL", preempt.DefaultEnvoyDrainURL), log)
			}
		}
		bg.Add(1)
		go func() {
			defer bg.Done()
			w.Run(ctx)
		}()
		log.Info("watching for preemption", "url", w.URL, "envoy_drain", opts.EnvoyDrain)
	}
	if handle, _ := envBool("HANDLE_TERMINATION"); handle {
		cfg, err := podwatch.ConfigFromEnv(os.Getenv)
		var pw *podwatch.Watcher
		if err == nil {
			pw, err = podwatch.New(cfg, log)
		}
		var follow []string
		if err == nil {
			startCtx, stopStart := context.WithTimeout(ctx, 30*time.Second)
			follow, err = pw.Start(startCtx)
			stopStart()
		}
		if err != nil {
			log.Error("cannot follow the pod (HANDLE_TERMINATION)", "err", err)
			return ExitUsage
		}
		log.Info("following the pod's containers: the wrapper ends when they all have", "pod", cfg.Namespace+"/"+cfg.Pod, "containers", strings.Join(follow, ","))
		bg.Add(1)
		go func() {
			defer bg.Done()
			if pw.Run(ctx) {
				observers.Observe(&events.Event{Kind: events.Termination, Reason: "the pod's followed containers have terminated: " + strings.Join(follow, ",")})
				sup.Finish()
			}
		}()
	}
	if sender != nil {
		// the sender outlives ctx a little: it sends what is queued (the
		// shutdown and the last exits) once the processes have ended
		sendCtx, stopSending := context.WithCancel(context.Background())
		sent := make(chan struct{})
		go func() { defer close(sent); sender.Run(sendCtx) }()
		defer func() { stopSending(); <-sent }()
		log.Info("sending lifecycle events", "address", sendCfg.Address)
	}
	if opts.PyroscopeURL != "" {
		stop, err := profile.Start(opts.PyroscopeURL, log)
		if err != nil {
			log.Error("bad command line", "err", err)
			return ExitUsage
		}
		defer stop()
	}
	mux := hs.Handler()
	mux.Handle("GET /metrics", met.Handler())
	merger := &prommerge.Merger{Label: "process", Timeout: 10 * time.Second}
	mux.Handle("GET /prommerge", merger.Handler(met.Gatherer(), mergeTargets(procs)))
	bg.Add(3)
	go func() {
		defer bg.Done()
		hooks.Run(ctx)
	}()
	go func() {
		defer bg.Done()
		if err := health.Serve(ctx, ln, mux); err != nil {
			log.Error("health endpoints stopped", "err", err)
		}
	}()
	go func() {
		defer bg.Done()
		if err := readyFile.WaitAndWrite(ctx, st); err != nil {
			log.Error("cannot write the readiness file", "err", err)
		}
	}()
	bg.Add(1)
	go func() {
		defer bg.Done()
		pageOutStartup(ctx, st, log)
	}()
	log.Info("starting", "version", version.String("process-wrapper"), "pid", os.Getpid(), "processes", len(procs), "http", ln.Addr().String())
	signals.Wait()
	// a stop signal that came while the wrapper was getting ready stops it
	// before any process starts (each then counts as ended by it)
	for pending := true; pending; {
		select {
		case sig := <-sigs:
			onSignal(sig.(syscall.Signal), sup, st, log)
		default:
			pending = false
		}
	}
	done := make(chan int, 1)
	go func() { done <- sup.Run(ctx) }()
	for {
		select {
		case code := <-done:
			readyFile.Remove()
			log.Always("exiting", "code", code, "orphans_reaped", rp.Orphans())
			return code
		case sig := <-sigs:
			onSignal(sig.(syscall.Signal), sup, st, log)
		}
	}
}

// onSignal acts on a signal the wrapper received (see package signals).
func onSignal(sig syscall.Signal, sup *supervisor.Supervisor, st *state.Store, log *logline.Logger) {
	switch signals.Of(sig) {
	case signals.Stop:
		if st.Stopping() {
			log.Info("already shutting down", "signal", config.SignalName(sig))
			return
		}
		sup.Stop(sig)
	case signals.Forward:
		sup.Forward(sig)
	}
}

// pageOutStartup gives back the binary's pages that only the start-up used
// (see package pageout), once every process has been started (or 5 s
// passed: one may wait long for a shared lock) and a second more, so that
// the first probes have run.
func pageOutStartup(ctx context.Context, st *state.Store, log *logline.Logger) {
	limit := time.NewTimer(5 * time.Second)
	defer limit.Stop()
	for started := false; !started; {
		sum, changed := st.Summarize()
		if started = sum.Unstarted == 0; started {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-limit.C:
			started = true
		case <-changed:
		}
	}
	settle := time.NewTimer(time.Second)
	defer settle.Stop()
	select {
	case <-ctx.Done():
		return
	case <-settle.C:
	}
	// the start-up's garbage (the config's, the starts') goes back
	// to the system now rather than at the scavenger's pace
	debug.FreeOSMemory()
	n, err := pageout.Binary()
	if err != nil {
		log.Debug("cannot give back the start-up pages", "err", err)
		return
	}
	log.Debug("gave back the binary's start-up pages", "mapped_bytes", n)
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
