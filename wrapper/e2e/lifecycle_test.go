package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

func TestExitCodes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml string
		want       int
	}{
		{"all zero", `
- {name: a, entrypoint: CHILD, args: [exit, "0"], restartPolicy: Never}
- {name: b, entrypoint: CHILD, args: [print, hi], restartPolicy: OnFailure}`, 0},
		{"one fails", `
- {name: a, entrypoint: CHILD, args: [exit, "0"], restartPolicy: Never}
- {name: b, entrypoint: CHILD, args: [exit, "5"], restartPolicy: Never}`, 5},
		{"first failure wins", `
- {name: late, entrypoint: sh, args: [-c, "sleep 1.5; exit 7"], restartPolicy: Never}
- {name: early, entrypoint: CHILD, args: [exit, "4"], restartPolicy: Never}`, 4},
		{"killed by signal", `
- {name: a, entrypoint: sh, args: [-c, "kill -9 $$$$"], restartPolicy: Never}`, 137},
		{"program not found", `
- {name: a, entrypoint: no-such-program-anywhere, restartPolicy: Never}`, 127},
		{"not executable", `
- {name: a, entrypoint: /etc/hostname, restartPolicy: Never}`, 126},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := start(t, config(t, tc.yaml), opts{})
			if code := w.wait(10 * time.Second); code != tc.want {
				t.Errorf("exit code %d, want %d", code, tc.want)
			}
		})
	}
}

func TestCompletedAndFailedStates(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: migrate, entrypoint: CHILD, args: [print, migrated], restartPolicy: Never}
- {name: broken, entrypoint: CHILD, args: [exit, "3"], restartPolicy: Never}
- {name: app, entrypoint: CHILD, args: [sleep, "1s"], restartPolicy: Never}`), opts{})
	w.waitLine(5*time.Second, "msg", "process completed", "process", "migrate")
	w.waitLine(5*time.Second, "msg", "process failed", "process", "broken", "code", "3")
	// the others keep running after a failure: app is still there
	if len(w.find("msg", "process exited", "process", "app")) != 0 {
		t.Fatal("app ended with the failure of another process")
	}
	if code := w.wait(10 * time.Second); code != 3 {
		t.Errorf("exit code %d, want 3 (the failed process)", code)
	}
}

func TestRestartBackoff(t *testing.T) {
	t.Parallel()
	counter := filepath.Join(t.TempDir(), "count")
	// fails twice, then succeeds: restarted after 1s, then 2s, then completed
	w := start(t, config(t, fmt.Sprintf(`
- name: flaky
  entrypoint: sh
  args: [-c, 'n=$(cat %[1]s 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s; echo run $n; [ $n -ge 3 ]']
  restartPolicy: OnFailure`, counter)), opts{})
	if code := w.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	starts := w.find("msg", "process started", "process", "flaky")
	if len(starts) != 3 {
		t.Fatalf("%d starts, want 3", len(starts))
	}
	gap1, gap2 := ts(t, starts[1]).Sub(ts(t, starts[0])), ts(t, starts[2]).Sub(ts(t, starts[1]))
	if gap1 < 900*time.Millisecond || gap2 < 1900*time.Millisecond || gap2 < gap1 {
		t.Errorf("restart gaps %v, %v: want about 1s then 2s", gap1, gap2)
	}
	if got := w.find("msg", "restarting process", "process", "flaky"); len(got) != 2 || got[0]["in"] != "1s" || got[1]["in"] != "2s" {
		t.Errorf("restart lines %v", got)
	}
}

func TestAlwaysRestartsEvenAfterSuccess(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: oneshot, entrypoint: CHILD, args: [print, done], restartPolicy: Always}`), opts{args: []string{"-graceful-shutdown-deadline", "2s"}})
	// SIGTERM while it waits for its second restart: its last run exited 0
	w.waitLine(10*time.Second, "msg", "restarting process", "process", "oneshot", "restarts", "2")
	w.signal(syscall.SIGTERM)
	if code := w.wait(5 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0 (the last run exited 0)", code)
	}
}

func TestSIGTERMDrainsGracefully(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: worker, entrypoint: CHILD, args: [trap, "0"]}
- {name: quitter, entrypoint: CHILD, args: [trap, "0"], stopSignal: SIGQUIT}`), opts{args: []string{"-graceful-shutdown-deadline", "5s"}})
	w.waitLine(5*time.Second, "app", "worker", "msg", "trapping signals")
	w.waitLine(5*time.Second, "app", "quitter", "msg", "trapping signals")
	sent := time.Now()
	w.signal(syscall.SIGTERM)
	if code := w.wait(5 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if time.Since(sent) > 4*time.Second {
		t.Errorf("drain took %v: the deadline was not needed", time.Since(sent))
	}
	w.waitLine(time.Second, "app", "worker", "msg", "got SIGTERM")
	w.waitLine(time.Second, "app", "worker", "msg", "draining")
	w.waitLine(time.Second, "app", "quitter", "msg", "got SIGQUIT")
	if len(w.find("msg", "graceful shutdown deadline reached: killing process group")) != 0 {
		t.Error("killed although every process drained")
	}
}

func TestDeadlineKillsTheWholeGroup(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
	w := start(t, config(t, fmt.Sprintf(`
- name: stubborn
  entrypoint: sh
  args: [-c, 'trap "echo ignoring TERM" TERM; CHILD sleep & echo $! > %s; while true; do sleep 0.05; done']`, pidFile)),
		opts{args: []string{"-graceful-shutdown-deadline", "700ms"}})
	waitfor.Condition(t, 5*time.Second, "the grandchild's pid file", func() bool {
		b, err := os.ReadFile(pidFile)
		return err == nil && len(strings.TrimSpace(string(b))) > 0
	})
	b, _ := os.ReadFile(pidFile)
	grandchild, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	sent := time.Now()
	w.signal(syscall.SIGTERM)
	code := w.wait(5 * time.Second)
	if code != 137 {
		t.Errorf("exit code %d, want 137 (killed at the deadline)", code)
	}
	if took := time.Since(sent); took < 700*time.Millisecond {
		t.Errorf("exited after %v, before the deadline", took)
	}
	w.waitLine(time.Second, "msg", "graceful shutdown deadline reached: killing process group", "process", "stubborn")
	// the grandchild in the same group was killed too (a zombie until the
	// wrapper's parent, the subreaper chain, reaps it: look at its state)
	waitfor.Condition(t, 3*time.Second, "the grandchild to be gone", func() bool {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", grandchild))
		return err != nil || strings.Contains(string(st), ") Z ")
	})
}

func TestForwardedSignals(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: a, entrypoint: CHILD, args: [trap, "0"]}
- {name: b, entrypoint: CHILD, args: [trap, "0"]}`), opts{})
	w.waitLine(5*time.Second, "app", "a", "msg", "trapping signals")
	w.waitLine(5*time.Second, "app", "b", "msg", "trapping signals")
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2} {
		w.signal(sig)
		name := map[syscall.Signal]string{syscall.SIGHUP: "SIGHUP", syscall.SIGUSR1: "SIGUSR1", syscall.SIGUSR2: "SIGUSR2"}[sig]
		w.waitLine(5*time.Second, "app", "a", "msg", "got "+name)
		w.waitLine(5*time.Second, "app", "b", "msg", "got "+name)
	}
	w.signal(syscall.SIGINT)
	if code := w.wait(5 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
	w.waitLine(time.Second, "app", "a", "msg", "got SIGTERM")
}

func TestSignalsDuringBackoffEndTheWrapper(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: crash, entrypoint: CHILD, args: [exit, "9"]}`), opts{})
	w.waitLine(5*time.Second, "msg", "restarting process", "process", "crash")
	w.signal(syscall.SIGTERM)
	if code := w.wait(3 * time.Second); code != 9 {
		t.Errorf("exit code %d, want 9: the last run failed", code)
	}
}

func TestSkipCommands(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: keep, entrypoint: CHILD, args: [print, kept], restartPolicy: Never}
- {name: drop, entrypoint: CHILD, args: [exit, "1"], restartPolicy: Never}`), opts{args: []string{"-skip-commands", "drop,not-in-config"}})
	if code := w.wait(5 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
	w.waitLine(time.Second, "app", "keep", "msg", "kept")
	if len(w.find("process", "drop", "msg", "process started")) != 0 {
		t.Error("a skipped process started")
	}
	w.waitLine(time.Second, "level", "warn", "msg", "-skip-commands names a process the config lacks", "process", "not-in-config")
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	envFile := filepath.Join(dir, "app.env")
	os.WriteFile(envFile, []byte("# comment\nFROM_FILE=file\nOVERRIDDEN=file\nQUOTED=\"a b\"\n"), 0o644)
	w := start(t, config(t, fmt.Sprintf(`
- name: env
  entrypoint: CHILD
  args: [env]
  envFiles: [%q]
  envs: {OVERRIDDEN: envs, GREETING: "hi $(FROM_FILE) $(POD_NAMESPACE)", LITERAL: "$$(FROM_FILE)"}
  restartPolicy: Never
- name: args
  command: [CHILD, args]
  args: ["$(WHO)", "$$(WHO)", "$(UNKNOWN)"]
  env: [{name: WHO, value: world}]
  restartPolicy: Never`, envFile)), opts{env: []string{"POD_NAMESPACE=ns1", "NODE_NAME=node1", "CONFIG=[]", "AMQP_PROBE_RABBITMQ_PASS=secret", "METRICS_SERVER_ADDRESS=x:1"}})
	if code := w.wait(5 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	env := map[string]string{}
	for _, l := range w.find("app", "env") {
		k, v, _ := strings.Cut(l["msg"], "=")
		env[k] = v
	}
	for k, want := range map[string]string{"FROM_FILE": "file", "OVERRIDDEN": "envs", "QUOTED": "a b", "GREETING": "hi file ns1",
		"LITERAL": "$(FROM_FILE)", "POD_NAMESPACE": "ns1", "NODE_NAME": "node1"} {
		if env[k] != want {
			t.Errorf("%s=%q, want %q", k, env[k], want)
		}
	}
	for _, k := range []string{"CONFIG", "AMQP_PROBE_RABBITMQ_PASS", "METRICS_SERVER_ADDRESS"} {
		if _, ok := env[k]; ok {
			t.Errorf("the child inherited the wrapper's own %s", k)
		}
	}
	var args []string
	for _, l := range w.find("app", "args") {
		args = append(args, l["msg"])
	}
	if strings.Join(args, "|") != "arg=world|arg=$(WHO)|arg=$(UNKNOWN)" {
		t.Errorf("args %q", args)
	}
}

func TestConfigFromEnvJSON(t *testing.T) {
	t.Parallel()
	cmdCfg := fmt.Sprintf(`[{"name":"j","entrypoint":%q,"args":["print","from json"],"restartPolicy":"Never"}]`, childBin)
	w := start(t, "", opts{env: []string{"CONFIG=" + cmdCfg}})
	if code := w.wait(5 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	w.waitLine(time.Second, "app", "j", "msg", "from json")
}

func TestBadConfigStartsNothing(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "ran")
	w := start(t, config(t, fmt.Sprintf(`
- {name: ok, entrypoint: touch, args: [%q]}
- {name: bad, entrypoint: CHILD, readines: {tcp: {socket: x}}, restartPolicy: sometimes}`, marker)), opts{})
	if code := w.wait(5 * time.Second); code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	// both mistakes of the process, each once, in the order of the file
	errs := w.find("level", "error", "msg", "bad config")
	if len(errs) != 2 || !strings.Contains(errs[0]["err"], `:3:`) || !strings.Contains(errs[0]["err"], `process "bad": field "readines": unknown field`) ||
		!strings.Contains(errs[1]["err"], `process "bad": field "restartPolicy": must be Always, OnFailure or Never, got "sometimes"`) {
		t.Errorf("errors %v", errs)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a process started despite the bad config")
	}
}

func TestUserAndGroup(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to switch users")
	}
	t.Parallel()
	// t.TempDir's parents are private to root: use a directory other users can reach
	dir, err := os.MkdirTemp(filepath.Dir(childBin), "wd-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	w := start(t, config(t, fmt.Sprintf(`
- {name: byid, entrypoint: CHILD, args: [id], user: 4321, group: 4322, workingDir: %q, restartPolicy: Never}
- {name: byname, entrypoint: CHILD, args: [id], user: nobody, group: nogroup, restartPolicy: Never}`, dir)), opts{})
	if code := w.wait(5 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if got := w.find("app", "byid")[0]["msg"]; got != fmt.Sprintf("uid=4321 gid=4322 groups=[] cwd=%s pgid=%s", dir, strings.TrimPrefix(w.find("msg", "process started", "process", "byid")[0]["pid"], "")) {
		t.Errorf("byid: %s", got)
	}
	if got := w.find("app", "byname")[0]["msg"]; !strings.HasPrefix(got, "uid=65534 gid=65534 ") {
		t.Errorf("byname: %s", got)
	}
}

// A wrapper without the capabilities that user, group and chroot need (a
// non-root container, as restricted Pod Security runs it) says which one it
// lacks at the start, instead of "operation not permitted"; the start fails
// as any does (code 128).
func TestUserWithoutCapabilities(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to drop to a user without capabilities")
	}
	t.Parallel()
	// t.TempDir's parents are private to root: the config goes where user 65532 reads it
	dir, err := os.MkdirTemp(filepath.Dir(childBin), "caps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte(strings.ReplaceAll(`
- {name: byid, entrypoint: CHILD, args: [id], user: 4321, restartPolicy: Never}
- {name: jailed, entrypoint: CHILD, args: [id], chroot: /, restartPolicy: Never}`, "CHILD", childBin)), 0o644)
	os.Chmod(dir, 0o755)
	w := start(t, cfg,
		opts{prefix: []string{"setpriv", "--reuid", "65532", "--regid", "65532", "--clear-groups", "--inh-caps=-all"}})
	if code := w.wait(5 * time.Second); code != 128 {
		t.Errorf("exit code %d, want 128", code)
	}
	for name, want := range map[string]string{
		"byid":   "the wrapper lacks CAP_SETUID (user 4321, the wrapper runs as 65532), CAP_SETGID (group",
		"jailed": "the wrapper lacks CAP_SYS_CHROOT (chroot /)",
	} {
		l := w.find("msg", "start failed", "process", name)
		if len(l) == 0 || !strings.Contains(l[0]["err"], want) {
			t.Errorf("%s: %v, want an error naming %q", name, l, want)
		}
	}
}

func TestChildrenGetCleanSignalState(t *testing.T) {
	t.Parallel()
	cfg := config(t, `
- {name: sig, entrypoint: CHILD, args: [sigstate], restartPolicy: Never}
- {name: stdin, entrypoint: CHILD, args: [stdin], restartPolicy: Never}`)
	// start the wrapper with signals ignored and blocked, as a careless parent might
	w := start(t, cfg, opts{prefix: []string{"perl", "-e",
		`use POSIX qw(:signal_h); $SIG{$_}="IGNORE" for qw(HUP INT TERM USR1 PIPE TTOU TTIN TSTP QUIT); ` +
			`sigprocmask(SIG_BLOCK, POSIX::SigSet->new(10, 12, 15, 28)) or die; exec @ARGV or die`}})
	if code := w.wait(5 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	w.waitLine(time.Second, "app", "sig", "msg", "SigBlk: 0000000000000000")
	var ign string
	for _, l := range w.find("app", "sig") {
		if v, ok := strings.CutPrefix(l["msg"], "SigIgn: "); ok {
			ign = v
		}
	}
	mask, err := strconv.ParseUint(ign, 16, 64)
	if raceBuild {
		// A race-built wrapper links glibc and the race runtime, which
		// sometimes leave glibc's internal signals 32 and 33 ignored; the
		// shipped wrapper is pure Go (CGO_ENABLED=0) and has no such signal.
		mask &^= 1<<31 | 1<<32
	}
	if err != nil || mask != 0 {
		t.Errorf("the child starts with signals ignored: SigIgn %q", ign)
	}
	w.waitLine(time.Second, "app", "stdin", "msg", "stdin bytes=0 err=<nil>")
}

func TestEachProcessHasItsOwnGroup(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: a, entrypoint: CHILD, args: [id], restartPolicy: Never}`), opts{})
	if code := w.wait(5 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	pid := w.find("msg", "process started", "process", "a")[0]["pid"]
	if got := w.find("app", "a")[0]["msg"]; !strings.HasSuffix(got, "pgid="+pid) {
		t.Errorf("child %s is not the leader of its own group: %s", pid, got)
	}
}

func TestVersionAndBadFlags(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(wrapperBin, "-version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "process-wrapper ") {
		t.Errorf("-version: %v %q", err, out)
	}
	out, err = exec.Command(wrapperBin, "-graceful-shutdown-deadline", "soon").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "level=error app=process-wrapper msg=\"bad command line\"") || !strings.Contains(string(out), "--graceful-shutdown-deadline") {
		t.Errorf("bad flag: %v %q", err, out)
	}
}

// -help shows the single-dash form, every default, the environment and the
// exit codes.
func TestHelp(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(wrapperBin, "-help").Output()
	if err != nil {
		t.Fatalf("-help: %v", err)
	}
	for _, want := range []string{" -config=FILE", " -http-address=HOST:PORT", "(default 0.0.0.0:8111)", "(default /tmp/started)",
		"http://localhost:8191)", "(default 10s)", "(default 2m0s)", "as one more process", "CONFIG ", "HANDLE_TERMINATION",
		"AMQP_PROBE_RABBITMQ_PASS", "Exit codes:", "128+S", "nothing was started"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("-help lacks %q:\n%s", want, out)
		}
	}
	if regexp.MustCompile(`(?m)^\s*(-h, )?--[a-z]`).Match(out) || strings.Contains(string(out), "inside the wrapper") {
		t.Errorf("-help shows the double-dash form or says the shared lock runs inside the wrapper:\n%s", out)
	}
}

// A chroot that does not exist (yet) is a start failure that names it, not
// a load error: a one-shot step that runs earlier may make it.
func TestMissingChrootNamedAtStart(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("chroot needs root")
	}
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "jail")
	w := start(t, config(t, fmt.Sprintf(`
- {name: jailed, entrypoint: /testchild, args: [exit, "0"], chroot: %q, restartPolicy: Never}`, missing)), opts{})
	if code := w.wait(5 * time.Second); code != 127 {
		t.Errorf("exit code %d, want 127", code)
	}
	l := w.waitLine(time.Second, "msg", "start failed", "process", "jailed")
	if !strings.Contains(l["err"], "chroot") || !strings.Contains(l["err"], missing) {
		t.Errorf("the start error does not name the chroot: %q", l["err"])
	}
}

// By default a process running as the wrapper's own uid, without
// CAP_SYS_PTRACE, cannot read the wrapper's initial environment (CONFIG,
// the probe passwords) through /proc; with -dumpable it can. The wrapper
// runs as nobody (setpriv drops every capability with root), so that the
// check is not passed by root's CAP_SYS_PTRACE.
func TestEnvironNotReadableByProcesses(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("setpriv --reuid needs root")
	}
	t.Parallel()
	for _, dumpable := range []bool{false, true} {
		t.Run(fmt.Sprintf("dumpable=%v", dumpable), func(t *testing.T) {
			t.Parallel()
			cfg := `[{"name": "peek", "entrypoint": "sh", "restartPolicy": "Never",
			  "args": ["-c", "n=$(tr '\\0' '\\n' < /proc/$PPID/environ | grep -c '^CONFIG=' || true); echo readable=$n"]}]`
			args := []string{"-readiness-file", fmt.Sprintf("/tmp/pw-dumpable-%d-%v", os.Getpid(), dumpable)}
			if dumpable {
				args = append(args, "-dumpable")
			}
			w := start(t, "", opts{prefix: []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"},
				env: []string{"CONFIG=" + cfg, "AMQP_PROBE_RABBITMQ_PASS=s3cret"}, args: args})
			if code := w.wait(10 * time.Second); code != 0 {
				t.Fatalf("exit code %d", code)
			}
			want := "readable=0"
			if dumpable {
				want = "readable=1"
			}
			w.waitLine(time.Second, "app", "peek", "msg", want)
		})
	}
}
