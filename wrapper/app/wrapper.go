package app

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/internal/version"
	"github.com/process-wrapper/process-wrapper/prommerge"
	"github.com/process-wrapper/process-wrapper/wrapper/cli"
	"github.com/process-wrapper/process-wrapper/wrapper/config"
	"github.com/process-wrapper/process-wrapper/wrapper/control"
	"github.com/process-wrapper/process-wrapper/wrapper/events"
	"github.com/process-wrapper/process-wrapper/wrapper/health"
	"github.com/process-wrapper/process-wrapper/wrapper/hook"
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
)

// part is one concern of the wrapper: it runs until ctx ends (or its work
// is done) and owns what it starts.
type part interface{ Run(ctx context.Context) }

// wrapper is what the wrapper is made of. Each part is built from the
// command line, the environment and the config by assemble, and run by
// run; they stop in reverse order of their lifetimes.
type wrapper struct {
	log   *logline.Logger
	out   *logline.Output
	state *state.Store

	// until the very end: every child and orphan is reaped
	reaper *reaper.Reaper
	// until the processes' last lines are out
	poller *relay.Poller
	// the processes
	sup *supervisor.Supervisor
	// until the processes have ended: the endpoints, the readiness file,
	// the hooks, the watchers
	parts []part
	// a little longer: the last events and the last profile go out after
	// the processes' end
	last []part

	readyFile *health.ReadinessFile
	stopDrain context.CancelFunc // abandons an envoy drain in progress
	http      string             // the endpoints' address, for the "starting" line
	procs     int
}

// startError is a part that could not be built: nothing has started.
type startError struct {
	msg  string // "bad environment", "bad config", ...
	err  error
	code int // the exit code; 0: ExitUsage
}

func (e *startError) Error() string { return e.msg + ": " + e.err.Error() }

// assemble builds every part of the wrapper. A part that cannot be built
// is a start error (exit 2).
func assemble(opts *cli.Options, procs []config.Process, format relay.Format, out *logline.Output, log *logline.Logger) (*wrapper, *startError) {
	names := make([]string, len(procs))
	for i, p := range procs {
		names[i] = p.Name
	}
	w := &wrapper{log: log, out: out, state: state.New(names), procs: len(procs)}
	met := metrics.New(w.state)
	metrics.RegisterLogger(met.Registry(), log)
	observers := events.Observers{met}
	sendCfg, err := events.ConfigFromEnv(os.Getenv)
	if err != nil {
		return nil, &startError{"bad environment", err, 0}
	}
	if sendCfg.Address != "" {
		sender := events.NewSender(sendCfg, log)
		metrics.RegisterSender(met.Registry(), sender)
		observers = append(observers, sender)
		w.last = append(w.last, sender)
		log.Info("sending lifecycle events", "address", sendCfg.Address)
	}

	w.reaper = reaper.New()
	w.reaper.OnOrphan = func(e reaper.Exit) { met.Orphan(e.Pid, &e.Rusage) }
	reaps, err := reaper.BecomeSubreaper()
	if err != nil {
		log.Warn("cannot become a child subreaper: orphans of the processes will not be reaped by the wrapper", "err", err)
	}
	// every process's pipes are waited on by one poller, until the exit
	if w.poller, err = relay.NewPoller(); err != nil {
		return nil, &startError{"cannot relay the processes' output", err, 1}
	}

	beats := probe.NewBeats()
	w.readyFile = &health.ReadinessFile{Path: opts.ReadinessFile, State: w.state, Log: log}
	// an envoy drain in progress is abandoned when the shutdown begins
	drainCtx, stopDrain := context.WithCancel(context.Background())
	w.stopDrain = stopDrain
	locks := lockclient.New(opts.SharedLockURL)
	locks.Token = opts.SharedLockToken
	w.sup, err = supervisor.New(supervisor.Options{
		Processes:  procs,
		Reaper:     w.reaper,
		State:      w.state,
		Log:        log,
		Out:        out,
		Format:     format,
		Poller:     w.poller,
		Environ:    os.Environ(),
		Deadline:   opts.GracefulShutdownDeadline,
		Reaps:      reaps,
		Locks:      locks,
		Beats:      beats,
		Observer:   observers,
		AMQP:       probe.AMQPDefaults{DSNTemplate: os.Getenv("AMQP_PROBE_RABBITMQ_DSN_TEMPLATE"), User: os.Getenv("AMQP_PROBE_RABBITMQ_USER"), Pass: os.Getenv("AMQP_PROBE_RABBITMQ_PASS")},
		BeforeStop: func() { w.readyFile.Remove(); stopDrain() },
	})
	if err != nil {
		stopDrain()
		return nil, &startError{"bad config", err, 0}
	}

	ln, err := health.Listen(opts.HTTPAddress)
	if err != nil {
		stopDrain()
		return nil, &startError{"cannot serve the health endpoints", err, 0}
	}
	w.http = ln.Addr().String()
	hs := &health.Server{State: w.state, Beats: beats, WaitDeadline: opts.WaitDeadline, Log: log, NotReady: met.ReadinessFailed, WaitRefused: met.WaitRefused}
	mux := hs.Handler()
	mux.Handle("GET /metrics", met.Handler())
	merger := &prommerge.Merger{Label: "process", Timeout: 10 * time.Second}
	mux.Handle("GET /prommerge", merger.Handler(met.Gatherer(), mergeTargets(procs)))
	mux.Handle("GET /status", control.StatusPage(w.sup, met.Usage))
	w.parts = append(w.parts, &health.Endpoints{Listener: ln, Handler: mux, Log: log}, w.readyFile)

	hooks := &hook.Runner{Reaper: w.reaper, State: w.state, Log: log, Environ: w.sup.Environ, Observer: observers}
	for _, p := range procs {
		hooks.Hooks = append(hooks.Hooks, p.PostStart...)
	}
	if len(hooks.Hooks) > 0 {
		w.state.SetGate(hook.Gate)
		w.parts = append(w.parts, hooks)
	}
	w.parts = append(w.parts, &pageout.AfterStartup{State: w.state, Log: log})

	if handle, _ := envBool("HANDLE_PREEMPTION"); handle {
		pw := &preempt.Watcher{URL: envOr("METADATA_URL", preempt.DefaultMetadataURL), Log: log}
		pw.OnPreempted = func() {
			w.state.SetPreempted()
			observers.Observe(&events.Event{Kind: events.Preemption, Reason: "the metadata server says the instance is preempted"})
			if opts.EnvoyDrain {
				preempt.DrainEnvoy(drainCtx, envOr("ENVOY_DRAIN_URL", preempt.DefaultEnvoyDrainURL), log)
			}
		}
		w.parts = append(w.parts, pw)
		log.Info("watching for preemption", "url", pw.URL, "envoy_drain", opts.EnvoyDrain)
	}
	if handle, _ := envBool("HANDLE_TERMINATION"); handle {
		t, err := newTermination(w.sup, observers, log)
		if err != nil {
			stopDrain()
			ln.Close()
			return nil, &startError{"cannot follow the pod (HANDLE_TERMINATION)", err, 0}
		}
		w.parts = append(w.parts, t)
	}
	ctl, err := controlAPI(opts, w.sup, met, log)
	if err != nil {
		stopDrain()
		ln.Close()
		return nil, &startError{"cannot serve the control API", err, 0}
	}
	if ctl != nil {
		w.parts = append(w.parts, ctl)
	}
	if opts.PyroscopeURL != "" {
		pr, err := profile.Start(opts.PyroscopeURL, log)
		if err != nil {
			stopDrain()
			ln.Close()
			return nil, &startError{"bad command line", err, 0}
		}
		w.last = append(w.last, pr)
	}
	return w, nil
}

// run runs every part and the processes, and returns the wrapper's exit
// code once the processes have ended.
func (w *wrapper) run() int {
	// Every signal the wrapper acts on has been taken since package signals'
	// initialiser (a child starts with the default disposition of each of
	// them, as Go resets handled signals at exec). No signal.Stop at the
	// end: it waits for the signal machinery to go idle (milliseconds), and
	// the wrapper exits right after run returns.
	sigs := signals.Incoming()

	reaping := start(w.reaper)
	defer reaping.stop()
	defer w.stopDrain()
	// a stdout that has stopped moving holds the poller in a write that
	// never returns: the exit then goes on without it
	relaying := start(poll{w.poller, w.log})
	defer relaying.stopWithin(w.out, exitIdle)
	parts := start(w.parts...)
	defer parts.stop()
	last := start(w.last...)
	defer last.stop()

	w.log.Info("starting", "version", version.String("process-wrapper"), "pid", os.Getpid(), "processes", w.procs, "http", w.http)
	signals.Wait()
	// a stop signal that came while the wrapper was getting ready stops it
	// before any process starts (each then counts as ended by it)
	for pending := true; pending; {
		select {
		case sig := <-sigs:
			onSignal(sig.(syscall.Signal), w.sup, w.state, w.log)
		default:
			pending = false
		}
	}
	done := make(chan int, 1)
	go func() { done <- w.sup.Run(context.Background()) }()
	for {
		select {
		case code := <-done:
			w.readyFile.Remove()
			w.log.Always("exiting", "code", code, "orphans_reaped", w.reaper.Orphans())
			return code
		case sig := <-sigs:
			onSignal(sig.(syscall.Signal), w.sup, w.state, w.log)
		}
	}
}

// running is a set of parts, each on a goroutine it owns, until stop.
type running struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{}
}

func start(parts ...part) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	for _, p := range parts {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			p.Run(ctx)
		}()
	}
	go func() { r.wg.Wait(); close(r.done) }()
	return r
}

// stop ends the parts' context and waits for them.
func (r *running) stop() {
	r.cancel()
	<-r.done
}

// stopWithin ends the parts' context and waits for them while out moves.
func (r *running) stopWithin(out *logline.Output, idle time.Duration) {
	r.cancel()
	out.WaitIdle(r.done, idle)
}

// poll runs the poller as a part.
type poll struct {
	p   *relay.Poller
	log *logline.Logger
}

func (p poll) Run(ctx context.Context) {
	if err := p.p.Run(ctx); err != nil {
		p.log.Error("the log relay's poller failed", "err", err)
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

// termination is HANDLE_TERMINATION: the wrapper drains and exits 0 once
// the pod's followed containers have all terminated.
type termination struct {
	w      *podwatch.Watcher
	follow []string
	sup    *supervisor.Supervisor
	obs    events.Observer
}

// newTermination checks that the pod can be followed (the API answers, the
// followed containers exist) before anything starts.
func newTermination(sup *supervisor.Supervisor, obs events.Observer, log *logline.Logger) (*termination, error) {
	cfg, err := podwatch.ConfigFromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	pw, err := podwatch.New(cfg, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	follow, err := pw.Start(ctx)
	if err != nil {
		return nil, err
	}
	log.Info("following the pod's containers: the wrapper ends when they all have", "pod", cfg.Namespace+"/"+cfg.Pod, "containers", strings.Join(follow, ","))
	return &termination{w: pw, follow: follow, sup: sup, obs: obs}, nil
}

func (t *termination) Run(ctx context.Context) {
	if t.w.Run(ctx) {
		t.obs.Observe(&events.Event{Kind: events.Termination, Reason: "the pod's followed containers have terminated: " + strings.Join(t.follow, ",")})
		t.sup.Finish()
	}
}

// runWrapper assembles the wrapper and runs it.
func runWrapper(opts *cli.Options, procs []config.Process, format relay.Format, out *logline.Output, log *logline.Logger) int {
	// The wrapper's own lines wait in a bounded queue from here on: no
	// control path (shutdown, restarts, probes, endpoints) waits for a
	// blocked stdout. At the exit what is queued is written, unless stdout
	// has stopped moving (see logline.Logger.Close).
	log.Async()
	defer log.Close(exitIdle)
	w, se := assemble(opts, procs, format, out, log)
	if se != nil {
		for _, line := range strings.Split(se.err.Error(), "\n") {
			log.Error(se.msg, "err", line)
		}
		return cmp.Or(se.code, ExitUsage)
	}
	return w.run()
}

// controlAPI is the control API on -control-socket (a socket that cannot
// be made is logged, and the wrapper runs without it) and -control-address
// (one that cannot listen is a start error); nil without either.
func controlAPI(opts *cli.Options, sup *supervisor.Supervisor, met *metrics.Metrics, log *logline.Logger) (*control.Server, error) {
	srv := &control.Server{Ops: sup, Usage: met.Usage, Log: log, Timeout: opts.GracefulShutdownDeadline + 10*time.Second, Token: opts.ControlToken}
	served := false
	if opts.ControlAddress != "" {
		ln, err := net.Listen("tcp", opts.ControlAddress)
		if err != nil {
			return nil, fmt.Errorf("-control-address: %w", err)
		}
		srv.Serve(ln, true)
		served = true
		log.Warn("control API on TCP: its bearer token crosses the pod network in clear", "address", ln.Addr().String())
	}
	if opts.ControlSocket != "" {
		ln, err := control.ListenUnix(opts.ControlSocket)
		if err != nil {
			log.Warn("no control API on a socket: it cannot be made", "socket", opts.ControlSocket, "err", err)
		} else {
			srv.Serve(ln, false)
			served = true
			log.Info("control API", "socket", opts.ControlSocket)
		}
	}
	if !served {
		return nil, nil
	}
	return srv, nil
}
