package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// index returns the place of the first line matching match in lines, or -1.
func index(lines []line, match ...string) int {
	for i, l := range lines {
		if l.matches(match) {
			return i
		}
	}
	return -1
}

// before fails the test unless the line matching a comes before the one
// matching b in the wrapper's output.
func before(t *testing.T, lines []line, a, b []string) {
	t.Helper()
	i, j := index(lines, a...), index(lines, b...)
	if i < 0 || j < 0 || i > j {
		t.Errorf("want %q (line %d) before %q (line %d)", a, i, b, j)
	}
}

func started(name string) []string { return []string{"msg", "process started", "process", name} }

// marker writes a script for sh that traps SIGTERM, prints "trapping
// signals", and at SIGTERM prints "saw M" or "missed M" for each file M of
// $MARKS, then "got SIGTERM", and exits 0: what ran before the stop signal
// shows in files, since the order of lines from different pipes is not
// the order of their writes.
func marker(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "marker.sh")
	script := `trap 'for m in $MARKS; do if [ -e "$m" ]; then echo "saw $m"; else echo "missed $m"; fi; done; echo "got SIGTERM"; exit 0' TERM
echo "trapping signals"
while :; do sleep 0.05; done
`
	if err := os.WriteFile(p, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStartOrderAndConditions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	gate := filepath.Join(dir, "cache-ready")
	w := start(t, config(t, fmt.Sprintf(`
- {name: migrate, entrypoint: sh, args: [-c, "echo migrated"], restartPolicy: OnFailure}
- {name: broken, entrypoint: CHILD, args: [exit, "3"], restartPolicy: Never}
- name: cache
  entrypoint: CHILD
  args: [sleep]
  readinessProbe: {file: {path: %s}, periodSeconds: 1}
- name: app
  entrypoint: CHILD
  args: [sleep]
  dependsOn:
    - {name: migrate, condition: completedSuccessfully}
    - {name: cache, condition: ready}
- {name: ship, entrypoint: CHILD, args: [sleep], dependsOn: [{name: app, condition: started}]}
- {name: report, entrypoint: CHILD, args: [print, reported], restartPolicy: Never, dependsOn: [{name: broken, condition: completed}]}
- {name: needs-ok, entrypoint: CHILD, args: [sleep], dependsOn: [{name: broken, condition: completedSuccessfully}]}
`, gate)), opts{})
	base := w.url()
	// completed: a failure is a final state too
	w.waitLine(5*time.Second, "app", "report", "msg", "reported")
	// completedSuccessfully on a failed process: failed at once, with why
	fail := w.waitLine(5*time.Second, "msg", "process failed for good", "process", "needs-ok")
	if want := "broken failed for good (exit code 3), so it cannot complete successfully"; fail["reason"] != want || fail["code"] != "1" {
		t.Errorf("needs-ok: reason %q code %s, want %q and 1 (no run of its own)", fail["reason"], fail["code"], want)
	}
	// ready: app waits for cache's readiness, and /readiness says so
	w.waitLine(5*time.Second, "msg", "waiting for a dependency", "process", "app", "waits_for", "cache (ready)")
	waitfor.Condition(t, 5*time.Second, "/readiness to name the edge app waits on", func() bool {
		_, body := httpGet(t, base+"/readiness")
		return strings.Contains(body, "app: waiting for cache (ready)")
	})
	if len(w.find(started("app")...)) != 0 || len(w.find(started("ship")...)) != 0 {
		t.Fatal("app or ship started before cache was ready")
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w.waitLine(5*time.Second, started("ship")...)
	lines := w.lines()
	before(t, lines, []string{"msg", "process completed", "process", "migrate"}, started("app"))
	before(t, lines, []string{"msg", "readiness probe passed", "process", "cache"}, started("app"))
	before(t, lines, started("app"), started("ship"))
	// each edge is logged once, however often its dependency changes
	if n := len(w.find("msg", "waiting for a dependency", "process", "app", "waits_for", "cache (ready)")); n != 1 {
		t.Errorf("the wait for cache was logged %d times", n)
	}
	w.signal(syscall.SIGTERM)
	if code := w.wait(10 * time.Second); code != 3 {
		t.Errorf("exit code %d, want 3 (broken, the first to fail)", code)
	}
}

func TestDependencyTimeout(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: db, entrypoint: CHILD, args: [sleep], readinessProbe: {file: {path: /nonexistent/ready}, periodSeconds: 1}}
- {name: app, entrypoint: CHILD, args: [sleep], dependsOn: [{name: db, condition: ready, timeoutSeconds: 1}]}
`), opts{})
	base := w.url()
	began := time.Now()
	l := w.waitLine(5*time.Second, "msg", "process failed for good", "process", "app")
	if took := time.Since(began); took < 900*time.Millisecond {
		t.Errorf("app failed after %s, before its 1 s timeout", took)
	}
	if want := "waited 1s for db (ready): its timeoutSeconds ran out"; l["reason"] != want {
		t.Errorf("reason %q, want %q", l["reason"], want)
	}
	w.waitLine(time.Second, "msg", "dependency not met in time", "process", "app", "waits_for", "db (ready)")
	code, body := httpGet(t, base+"/liveness")
	if code != 503 || !strings.Contains(body, "app: failed: waited 1s for db (ready)") {
		t.Errorf("/liveness %d %q: a process failed for good is not live", code, body)
	}
	if len(w.find(started("app")...)) != 0 {
		t.Error("app started")
	}
	w.signal(syscall.SIGTERM)
	if code := w.wait(10 * time.Second); code != 1 {
		t.Errorf("exit code %d, want 1 (app failed without a run)", code)
	}
}

// TestReverseShutdown: each process, on its stop signal, looks whether
// what it depends on still runs: in a chain ship -> app -> db, and a
// process with no edges, which stops at once.
func TestReverseShutdown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// a process that records its pid, and on SIGTERM reports whether the
	// pid in $DEP still lives, waits a little, and exits 0
	script := filepath.Join(dir, "stop.sh")
	if err := os.WriteFile(script, []byte(`echo $$ > `+dir+`/$NAME.pid
trap 'if [ -n "$DEP" ]; then if kill -0 $(cat `+dir+`/$DEP.pid) 2>/dev/null; then echo "$DEP up"; else echo "$DEP down"; fi; fi; sleep 0.5; exit 0' TERM
while :; do sleep 0.05; done
`), 0o644); err != nil {
		t.Fatal(err)
	}
	w := start(t, config(t, fmt.Sprintf(`
- {name: db, entrypoint: sh, args: [%[1]s], envs: {NAME: db}}
- {name: app, entrypoint: sh, args: [%[1]s], envs: {NAME: app, DEP: db}, dependsOn: [{name: db, condition: started}]}
- {name: ship, entrypoint: sh, args: [%[1]s], envs: {NAME: ship, DEP: app}, dependsOn: [{name: app, condition: started}]}
- {name: alone, entrypoint: sh, args: [%[1]s], envs: {NAME: alone}}
`, script)), opts{args: []string{"-graceful-shutdown-deadline", "10s"}})
	w.waitLine(5*time.Second, started("ship")...)
	waitfor.Condition(t, 5*time.Second, "every pid file", func() bool {
		for _, n := range []string{"db", "app", "ship", "alone"} {
			if b, err := os.ReadFile(filepath.Join(dir, n+".pid")); err != nil || len(b) == 0 {
				return false
			}
		}
		return true
	})
	w.signal(syscall.SIGTERM)
	if code := w.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	for _, c := range []struct{ proc, msg string }{{"ship", "app up"}, {"app", "db up"}} {
		if len(w.find("app", c.proc, "msg", c.msg)) != 1 {
			t.Errorf("%s did not see %q at its stop signal", c.proc, c.msg)
		}
	}
	lines := w.lines()
	exited := func(n string) []string { return []string{"msg", "process exited", "process", n} }
	signalled := func(n string) []string { return []string{"msg", "sending stop signal", "process", n} }
	before(t, lines, exited("ship"), signalled("app"))
	before(t, lines, exited("app"), signalled("db"))
	// no edges: alone is stopped with the first, not after the chain
	before(t, lines, signalled("alone"), exited("ship"))
}

func TestPreStopKinds(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var requests []string
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	marks := t.TempDir()
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, r.Method+" "+r.URL.Path+" "+r.Header.Get("X-Drain"))
		mu.Unlock()
		if r.URL.Path == "/drain" {
			os.WriteFile(filepath.Join(marks, "http.done"), nil, 0o644)
		}
		if r.URL.Path == "/fail" {
			rw.WriteHeader(500)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	work := t.TempDir()
	w := start(t, config(t, fmt.Sprintf(`
- name: byexec
  entrypoint: sh
  args: [%[3]s]
  workingDir: %[2]s
  envs: {DRAIN_MODE: graceful, MARKS: %[2]s/exec.done}
  lifecycle: {preStop: {exec: {command: [sh, -c, 'echo "mode=$DRAIN_MODE dir=$(pwd)"; echo oops >&2; touch exec.done']}}}
- name: byhttp
  entrypoint: sh
  args: [%[3]s]
  envs: {MARKS: %[4]s/http.done}
  lifecycle: {preStop: {httpGet: {path: /drain, port: %[1]d, httpHeaders: [{name: X-Drain, value: now}]}}}
- name: bysleep
  entrypoint: CHILD
  args: [trap]
  lifecycle: {preStop: {sleep: {seconds: 1}}}
- name: failing
  entrypoint: CHILD
  args: [trap]
  lifecycle: {preStop: {httpGet: {path: /fail, port: %[1]d}}}
- name: asuser
  entrypoint: CHILD
  args: [trap]
  user: 65534
  group: 65534
  lifecycle: {preStop: {exec: {command: [sh, -c, 'echo "uid=$(id -u) gid=$(id -g)"']}}}
`, port, work, marker(t), marks)), opts{})
	for _, n := range []string{"byexec", "byhttp", "bysleep", "failing", "asuser"} {
		w.waitLine(5*time.Second, "app", n, "msg", "trapping signals")
	}
	w.signal(syscall.SIGTERM)
	if code := w.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d: a failed preStop is not fatal", code)
	}
	lines := w.lines()
	// exec: the process's environment and working directory, its lines
	// relayed as the process's, before the stop signal
	out := w.waitLine(time.Second, "app", "byexec", "hook", "preStop", "stream", "stdout")
	if out["msg"] != "mode=graceful dir="+work {
		t.Errorf("preStop exec ran with %q", out["msg"])
	}
	w.waitLine(time.Second, "app", "byexec", "hook", "preStop", "stream", "stderr", "msg", "oops")
	w.waitLine(time.Second, "app", "byexec", "msg", "saw "+work+"/exec.done")
	if l := w.waitLine(time.Second, "app", "asuser", "hook", "preStop"); l["msg"] != "uid=65534 gid=65534" {
		t.Errorf("asuser's preStop ran as %q, want the process's user", l["msg"])
	}
	// httpGet: a real request, then the stop signal
	mu.Lock()
	got := append([]string(nil), requests...)
	mu.Unlock()
	if !strings.Contains(strings.Join(got, ","), "GET /drain now") {
		t.Errorf("requests %q, want GET /drain with its header", got)
	}
	w.waitLine(time.Second, "app", "byhttp", "msg", "saw "+marks+"/http.done")
	before(t, lines, []string{"msg", "preStop done", "process", "byhttp", "handler", "httpGet"}, []string{"msg", "sending stop signal", "process", "byhttp"})
	// sleep: the stop signal a second after the shutdown began
	down := ts(t, w.waitLine(time.Second, "msg", "shutting down"))
	sig := ts(t, w.waitLine(time.Second, "msg", "sending stop signal", "process", "bysleep"))
	if d := sig.Sub(down); d < 950*time.Millisecond || d > 3*time.Second {
		t.Errorf("bysleep's stop signal came %s after the shutdown, want about 1 s", d)
	}
	// a failure is logged, and the stop goes on
	f := w.waitLine(time.Second, "msg", "preStop failed: stopping the process all the same", "process", "failing")
	if !strings.Contains(f["err"], "500") {
		t.Errorf("failure reason %q", f["err"])
	}
	w.waitLine(time.Second, "app", "failing", "msg", "got SIGTERM")
}

// TestPreStopOnRestartAndDeadline: preStop runs when a liveness failure
// restarts a process, never when the process exits on its own, and a
// preStop that outlasts the deadline ends with the process's SIGKILL.
func TestPreStopOnRestartAndDeadline(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	healthy := filepath.Join(dir, "healthy")
	if err := os.WriteFile(healthy, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w := start(t, config(t, fmt.Sprintf(`
- name: web
  entrypoint: sh
  args: [%[2]s]
  envs: {MARKS: %[3]s/web.drained}
  livenessProbe: {file: {path: %[1]s}, periodSeconds: 1, failureThreshold: 1}
  lifecycle: {preStop: {exec: {command: [sh, -c, "echo drain web; touch %[3]s/web.drained"]}}}
- name: quitter
  entrypoint: CHILD
  args: [exit, "0"]
  restartPolicy: Never
  lifecycle: {preStop: {exec: {command: [sh, -c, "echo must not run"]}}}
- name: stuck
  entrypoint: CHILD
  args: [ignore-term]
  lifecycle: {preStop: {exec: {command: [sh, -c, "echo hanging; exec sleep 60"]}}}
`, healthy, marker(t), dir)), opts{args: []string{"-graceful-shutdown-deadline", "2s"}})
	w.waitLine(5*time.Second, "app", "web", "msg", "trapping signals")
	w.waitLine(5*time.Second, "msg", "process completed", "process", "quitter")
	if err := os.Remove(healthy); err != nil {
		t.Fatal(err)
	}
	w.waitLine(10*time.Second, "app", "web", "hook", "preStop", "msg", "drain web")
	w.waitLine(5*time.Second, "msg", "restarting process", "process", "web", "reason", "liveness")
	w.waitLine(5*time.Second, "app", "web", "msg", "saw "+dir+"/web.drained")
	if err := os.WriteFile(healthy, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w.waitLine(10*time.Second, "app", "web", "msg", "trapping signals") // its second run
	waitfor.Condition(t, 5*time.Second, "web's second run", func() bool {
		return len(w.find("app", "web", "msg", "trapping signals")) == 2
	})
	began := time.Now()
	w.signal(syscall.SIGTERM)
	code := w.wait(10 * time.Second)
	if took := time.Since(began); took > 4*time.Second {
		t.Errorf("the wrapper took %s to exit with a 2 s deadline", took)
	}
	if code != 137 {
		t.Errorf("exit code %d, want 137 (stuck killed at the deadline)", code)
	}
	w.waitLine(time.Second, "msg", "preStop had not ended at the deadline", "process", "stuck")
	if len(w.find("msg", "sending stop signal", "process", "stuck")) != 0 {
		t.Error("stuck got its stop signal after the deadline instead of SIGKILL")
	}
	if len(w.find("msg", "must not run")) != 0 || len(w.find("msg", "running preStop", "process", "quitter")) != 0 {
		t.Error("preStop ran for a process that exited on its own")
	}
	if n := len(w.find("app", "web", "hook", "preStop", "msg", "drain web")); n != 2 {
		t.Errorf("web's preStop ran %d times, want 2 (the liveness restart, the shutdown)", n)
	}
}

func TestRestartBudget(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: crashy, entrypoint: CHILD, args: [exit, "4"], maxRestarts: 2, restartWindowSeconds: 60}
- {name: clean, entrypoint: CHILD, args: [exit, "0"], maxRestarts: 0}
- {name: other, entrypoint: CHILD, args: [sleep]}
`), opts{})
	base := w.url()
	l := w.waitLine(10*time.Second, "msg", "process failed for good", "process", "crashy")
	if want := "restart budget spent: 2 restarts within 1m0s (maxRestarts 2)"; l["reason"] != want || l["code"] != "4" {
		t.Errorf("crashy: reason %q code %s, want %q and 4", l["reason"], l["code"], want)
	}
	if n := len(w.find(started("crashy")...)); n != 3 {
		t.Errorf("crashy ran %d times, want 3 (the first run and 2 restarts)", n)
	}
	c := w.waitLine(5*time.Second, "msg", "process failed for good", "process", "clean")
	if c["code"] != "1" || len(w.find(started("clean")...)) != 1 {
		t.Errorf("clean (exit 0 under Always, maxRestarts 0): code %s after %d runs, want 1 after 1", c["code"], len(w.find(started("clean")...)))
	}
	code, body := httpGet(t, base+"/liveness")
	if code != 503 || !strings.Contains(body, "crashy: failed: restart budget spent") {
		t.Errorf("/liveness %d %q", code, body)
	}
	w.signal(syscall.SIGTERM)
	if code := w.wait(10 * time.Second); code != 1 {
		t.Errorf("exit code %d, want 1 (clean's, the first to fail for good)", code)
	}
}

// TestEssential: the Job pattern. When the essential process ends, the
// others are drained (a dependent first) and the wrapper exits with its
// code, whatever their exits in the drain.
func TestEssential(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		code int
	}{{"fails", 3}, {"succeeds", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := start(t, config(t, fmt.Sprintf(`
- {name: proxy, entrypoint: CHILD, args: [trap, "7"]}
- name: main
  entrypoint: sh
  args: [-c, "sleep 0.3; exit %d"]
  restartPolicy: Never
  essential: true
  dependsOn: [{name: proxy, condition: started}]
- {name: shipper, entrypoint: CHILD, args: [trap, "9"], dependsOn: [{name: proxy, condition: started}]}
`, tc.code)), opts{})
			l := w.waitLine(5*time.Second, "msg", "essential process ended: stopping the others", "process", "main")
			if l["code"] != fmt.Sprint(tc.code) {
				t.Errorf("essential line %v", l)
			}
			if code := w.wait(10 * time.Second); code != tc.code {
				t.Errorf("exit code %d, want %d (main's; the others exit 7 and 9 in the drain)", code, tc.code)
			}
			w.waitLine(time.Second, "app", "proxy", "msg", "got SIGTERM")
			before(t, w.lines(), []string{"msg", "process exited", "process", "shipper"}, []string{"msg", "sending stop signal", "process", "proxy"})
			w.waitLine(time.Second, "msg", "shutting down", "reason", "essential process main ended")
		})
	}
}

func TestCheckCommand(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, env []string, args ...string) (int, string) {
		t.Helper()
		var out bytes.Buffer
		w := start(t, "", opts{rawArgs: append([]string{"check"}, args...), env: env, raw: &out})
		code := w.wait(10 * time.Second)
		return code, out.String()
	}
	good := config(t, `
- {name: migrate, entrypoint: CHILD, args: [exit, "0"], restartPolicy: OnFailure}
- {name: cache, entrypoint: CHILD, args: [sleep]}
- name: app
  entrypoint: CHILD
  args: [sleep]
  user: no-such-user-here
  dependsOn: [{name: migrate, condition: completedSuccessfully}, {name: cache, condition: ready}]
- {name: ship, entrypoint: no-such-program, dependsOn: [{name: app, condition: started}]}
- {name: extra, entrypoint: CHILD, dependsOn: [{name: cache, condition: started}]}
`)
	code, out := run(t, nil, "-config", good)
	if code != 0 {
		t.Fatalf("check exit %d on a valid config:\n%s", code, out)
	}
	for _, want := range []string{
		good + ": valid, 5 processes\n",
		"  1: migrate cache\n  2: app extra\n  3: ship\n",
		`field \"user\": unknown user \"no-such-user-here\"`,
		`process=ship err="exec \"no-such-program\": executable file not found`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	// -skip-commands applies: ship's edge to app is dropped, with a warning
	code, out = run(t, nil, "-config", good, "-skip-commands", "app")
	if code != 0 || !strings.Contains(out, "  1: migrate cache ship\n  2: extra\n") || !strings.Contains(out, "dropping a dependsOn edge to a skipped process") {
		t.Errorf("check -skip-commands app: exit %d\n%s", code, out)
	}
	// CONFIG holds the config without -config
	code, out = run(t, []string{`CONFIG=[{"name":"a","entrypoint":"x"}]`})
	if code != 0 || !strings.Contains(out, "CONFIG: valid, 1 processes") {
		t.Errorf("check with CONFIG: exit %d\n%s", code, out)
	}
	bad := config(t, `
- {name: a, entrypoint: x, restartPolicy: Never, dependsOn: [{name: b, condition: started}]}
- {name: b, entrypoint: x, dependsOn: [{name: a, condition: ready}, {name: ghost, condition: started}]}
- {name: c, entrypoint: x, dependsOn: [{name: c, condition: started}, {name: b, condition: completedSuccessfully}]}
`)
	code, out = run(t, nil, "-config", bad)
	if code != 2 {
		t.Errorf("check exit %d on a bad config, want 2", code)
	}
	for _, want := range []string{
		`process \"b\": field \"dependsOn[1].name\": no process is named \"ghost\"`,
		`process \"c\": field \"dependsOn[0].name\": a process cannot depend on itself`,
		`process \"c\": field \"dependsOn[1].condition\": b has restartPolicy Always`,
		`process \"b\": field \"dependsOn[0].name\": a cycle: a -> b -> a`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "start order") {
		t.Errorf("a bad config printed a start order:\n%s", out)
	}
	// the same errors stop a start, before anything runs
	w := start(t, bad, opts{})
	if code := w.wait(10 * time.Second); code != 2 {
		t.Errorf("a start with a cycle: exit %d, want 2", code)
	}
	if len(w.find("msg", "bad config")) != 4 || len(w.find("msg", "process started")) != 0 {
		t.Errorf("a start with a bad config:\n%s", w.dump())
	}
}
