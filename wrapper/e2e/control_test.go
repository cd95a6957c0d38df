package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/syncbuf"
	"github.com/process-wrapper/process-wrapper/internal/waitfor"
	"github.com/process-wrapper/process-wrapper/wrapper/control"
)

// ctl runs `process-wrapper ctl` on w's socket; cred, when set, runs it as
// that user.
func ctlRun(t *testing.T, cred *syscall.Credential, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(wrapperBin, append([]string{"ctl"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errb.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

func (w *wrapper) ctl(args ...string) (int, string, string) {
	w.t.Helper()
	return ctlRun(w.t, nil, append([]string{"-socket", w.socket}, args...)...)
}

// ctlOK runs a ctl command that must succeed and returns its stdout.
func (w *wrapper) ctlOK(args ...string) string {
	w.t.Helper()
	code, out, errs := w.ctl(args...)
	if code != 0 {
		w.t.Fatalf("ctl %q: exit %d: %s%s", args, code, out, errs)
	}
	return out
}

// status is one process as the API shows it (ctl -o json status NAME).
func (w *wrapper) status(name string) control.Process {
	w.t.Helper()
	var p control.Process
	if err := json.Unmarshal([]byte(w.ctlOK("-o", "json", "status", name)), &p); err != nil {
		w.t.Fatal(err)
	}
	return p
}

// unixClient is an HTTP client of the control socket.
func unixClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
}

func TestCtlCommands(t *testing.T) {
	t.Parallel()
	udp, mock := startMetricsMock(t)
	marks := t.TempDir()
	w := start(t, config(t, fmt.Sprintf(`
- name: db
  entrypoint: CHILD
  args: [trap]
  readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
- name: app
  entrypoint: CHILD
  args: [trap]
  dependsOn: [{name: db, condition: ready}]
  lifecycle: {preStop: {exec: {command: [sh, -c, "touch %s/app.drained"]}}}
- {name: once, entrypoint: CHILD, args: [print, "once ran"], restartPolicy: Never}
`, marks)), opts{env: []string{"METRICS_SERVER_ADDRESS=" + udp}})
	base := w.url()
	w.waitLine(5*time.Second, "app", "app", "msg", "trapping signals")
	w.waitLine(5*time.Second, "msg", "process completed", "process", "once")

	// status: a table for people, the API's objects with -o json
	table := w.ctlOK("status")
	for _, want := range []string{"NAME", "STATE", "db ", "app ", "once ", "running", "completed"} {
		if !strings.Contains(table, want) {
			t.Errorf("status lacks %q:\n%s", want, table)
		}
	}
	app := w.status("app")
	pid := w.waitLine(time.Second, "msg", "process started", "process", "app")["pid"]
	if fmt.Sprint(app.Pid) != pid || app.State != "running" || app.Run != 1 || !app.Ready || !app.Live ||
		len(app.DependsOn) != 1 || !app.DependsOn[0].Met || app.DependsOn[0].Condition != "ready" {
		t.Errorf("app: %+v (its pid %s)", app, pid)
	}
	if db := w.status("db"); len(db.Probes) != 1 || db.Probes[0].Type != "readiness" || db.Probes[0].Kind != "exec" || !db.Probes[0].OK ||
		db.Probes[0].Checks < 1 || strings.Join(db.Dependents, ",") != "app" || db.MemoryBytes <= 0 {
		t.Errorf("db: %+v", db)
	}
	if out := w.ctlOK("status", "app"); !strings.Contains(out, "depends on:  db (ready): met") {
		t.Errorf("status app:\n%s", out)
	}

	// stop: preStop, the stop signal; then held: not ready, live
	out := w.ctlOK("stop", "app")
	if !strings.HasPrefix(out, "stop app: stopped: stopped by request of uid 0 pid ") {
		t.Errorf("stop app: %q", out)
	}
	if _, err := os.Stat(filepath.Join(marks, "app.drained")); err != nil {
		t.Errorf("app's preStop did not run before ctl stop returned: %v", err)
	}
	if code, body := httpGet(t, base+"/readiness"); code != 503 || !strings.Contains(body, "app: stopped: stopped by request of uid 0") {
		t.Errorf("/readiness %d %q", code, body)
	}
	if code, body := httpGet(t, base+"/liveness"); code != 200 {
		t.Errorf("/liveness %d %q: a process stopped by request is live", code, body)
	}
	req := w.waitLine(time.Second, "msg", "control request", "process", "app", "action", "stop")
	if !strings.HasPrefix(req["by"], "uid 0 pid ") || !strings.Contains(req["by"], "(process-wrappe") {
		t.Errorf("the request's caller: %q", req["by"])
	}
	if code, _, errs := w.ctl("stop", "app"); code != 1 || !strings.Contains(errs, "app is already stopped by request (409)") {
		t.Errorf("a second stop: exit %d %q", code, errs)
	}

	// start, restart: new runs, new pids
	if out := w.ctlOK("start", "app"); !strings.HasPrefix(out, "start app: running (pid ") {
		t.Errorf("start app: %q", out)
	}
	second := w.status("app")
	if second.Run != 2 || second.Pid == app.Pid || second.State != "running" {
		t.Errorf("after start: %+v", second)
	}
	w.ctlOK("restart", "app")
	if third := w.status("app"); third.Run != 3 || third.Pid == second.Pid {
		t.Errorf("after restart: %+v", third)
	}

	// signal: to the main pid
	if out := w.ctlOK("signal", "app", "SIGHUP"); !strings.HasPrefix(out, "signal SIGHUP app: running") {
		t.Errorf("signal: %q", out)
	}
	w.waitLine(5*time.Second, "app", "app", "msg", "got SIGHUP")
	if code, _, errs := w.ctl("signal", "app", "NOPE"); code != 1 || !strings.Contains(errs, `unknown signal "NOPE"`) || !strings.Contains(errs, "(400)") {
		t.Errorf("a bad signal: exit %d %q", code, errs)
	}

	// start of a process that completed runs it again
	w.ctlOK("start", "once")
	waitfor.Condition(t, 5*time.Second, "once's second run", func() bool { return len(w.find("app", "once", "msg", "once ran")) == 2 })

	// stop with its dependents: app first, then db
	w.ctlOK("stop", "--dependents", "db")
	lines := w.lines()
	before(t, lines, []string{"msg", "process stopped by request: it stays stopped until a start", "process", "app"},
		[]string{"msg", "stopping process by request", "process", "db"})
	if a, d := w.status("app"), w.status("db"); !a.Held || !d.Held {
		t.Errorf("after stop --dependents db: app %s held %v, db %s held %v", a.State, a.Held, d.State, d.Held)
	}
	// a start waits for the process's own conditions, as at start-up
	if out := w.ctlOK("start", "app"); !strings.Contains(out, "pending: waiting for db (ready)") {
		t.Errorf("start app while db is stopped: %q", out)
	}
	w.ctlOK("start", "db")
	waitfor.Condition(t, 10*time.Second, "app to run again once db is ready", func() bool { return w.status("app").State == "running" })

	// errors
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"status", "nosuch"}, 1, `no such process: "nosuch" (404)`},
		{[]string{"stop", "once"}, 1, "once is not running: completed (409)"},
		{[]string{"frobnicate"}, 2, "unexpected argument frobnicate"},
		{[]string{"stop"}, 2, "expected \"<name>\""},
		{[]string{"-o", "yaml", "status"}, 2, "must be one of"},
	} {
		if code, _, errs := w.ctl(c.args...); code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("ctl %q: exit %d %q, want %d and %q", c.args, code, errs, c.code, c.want)
		}
	}
	if code, _, errs := ctlRun(t, nil, "-socket", filepath.Join(t.TempDir(), "none"), "status"); code != 1 || !strings.Contains(errs, "no wrapper answers at") {
		t.Errorf("ctl without a wrapper: exit %d %q", code, errs)
	}

	// each action is an event, with who asked
	waitfor.Condition(t, 5*time.Second, "control_action events", func() bool {
		evs := recorded(t, mock, "event=control_action&process=app")
		return len(evs) >= 5 && strings.HasPrefix(evs[0].Reason, "stop by uid 0 pid ")
	})
	w.signal(syscall.SIGTERM)
	if code := w.wait(10 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0 (db and app exit 0 on SIGTERM)", code)
	}
}

// A process stopped by request keeps the wrapper running, even as the last
// one; its exit does not count, and an essential one does not end the
// wrapper.
func TestCtlStoppedProcessRules(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: main, entrypoint: CHILD, args: [trap, "5"], restartPolicy: Never, essential: true}
`), opts{})
	base := w.url()
	w.waitLine(5*time.Second, "app", "main", "msg", "trapping signals")
	w.ctlOK("stop", "main")
	w.waitLine(time.Second, "msg", "process exited", "process", "main", "code", "5")
	// the wrapper still answers after its only process has exited, and
	// the essential stop did not end it
	if p := w.status("main"); !p.Held || p.State != "stopped" || !p.Live || p.Ready {
		t.Errorf("main after ctl stop: %+v", p)
	}
	if code, _ := httpGet(t, base+"/liveness"); code != 200 {
		t.Errorf("/liveness %d", code)
	}
	select {
	case <-w.done:
		t.Fatal("the wrapper exited after its only process was stopped by request")
	default:
	}
	if len(w.find("msg", "essential process ended: stopping the others")) != 0 {
		t.Error("a stop by request triggered the essential exit")
	}
	w.signal(syscall.SIGTERM)
	if code := w.wait(10 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0: the exit of a process stopped by request (5) does not count", code)
	}
}

// The socket: a 0700 directory, a 0600 socket; another uid is kept out by
// the directory, and by SO_PEERCRED when the permissions are opened (root
// passes any file mode, so the refused client runs as uid 65534).
func TestCtlSocketPermissions(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `- {name: a, entrypoint: CHILD, args: [sleep]}`), opts{})
	w.waitLine(5*time.Second, "msg", "control API", "socket", w.socket)
	dir := filepath.Dir(w.socket)
	for path, want := range map[string]os.FileMode{dir: os.ModeDir | 0o700, w.socket: os.ModeSocket | 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
			t.Errorf("%s: mode %v uid %d, want %v and the wrapper's", path, fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid, want)
		}
	}
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	// the test's temp directories are 0700 too: open the way to the socket
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if d != dir {
			os.Chmod(d, 0o755)
		}
	}
	if code, _, errs := ctlRun(t, nobody, "-socket", w.socket, "status"); code != 1 || !strings.Contains(errs, "permission denied") {
		t.Errorf("uid 65534 through the 0700 directory: exit %d %q", code, errs)
	}
	os.Chmod(dir, 0o755)
	os.Chmod(w.socket, 0o666)
	if code, _, errs := ctlRun(t, nobody, "-socket", w.socket, "status"); code != 1 || !strings.Contains(errs, "uid 65534 may not use the control API: only root and the wrapper's uid 0 (403)") {
		t.Errorf("uid 65534 with the permissions open: exit %d %q", code, errs)
	}
	w.waitLine(time.Second, "msg", "control API: request refused")
	w.ctlOK("status") // root still may

	// a socket left by a killed wrapper is replaced by the next one
	w.kill()
	if _, err := os.Lstat(w.socket); err != nil {
		t.Fatalf("the killed wrapper's socket: %v", err)
	}
	w2 := start(t, config(t, `- {name: b, entrypoint: CHILD, args: [sleep]}`), opts{args: []string{"-control-socket", w.socket}})
	w2.waitLine(5*time.Second, "msg", "control API", "socket", w.socket)
	if out := w2.ctlOK("-socket", w.socket, "status"); !strings.Contains(out, "b ") {
		t.Errorf("the second wrapper's status: %q", out)
	}
	// a directory of another uid is not the wrapper's to open: no API
	foreign := filepath.Join(t.TempDir(), "foreign")
	os.Mkdir(foreign, 0o777)
	os.Chown(foreign, 65534, 65534)
	w3 := start(t, config(t, `- {name: c, entrypoint: CHILD, args: [sleep]}`), opts{args: []string{"-control-socket", filepath.Join(foreign, "socket")}})
	l := w3.waitLine(5*time.Second, "msg", "no control API on a socket: it cannot be made")
	if !strings.Contains(l["err"], "belongs to uid 65534") {
		t.Errorf("the warning: %v", l)
	}
	w3.waitLine(5*time.Second, "msg", "process started", "process", "c") // it runs all the same
}

func TestCtlTCPToken(t *testing.T) {
	t.Parallel()
	token := filepath.Join(t.TempDir(), "token")
	os.WriteFile(token, []byte("s3cret-token\n"), 0o600)
	wrong := filepath.Join(t.TempDir(), "wrong")
	os.WriteFile(wrong, []byte("guess"), 0o600)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	w := start(t, config(t, `- {name: a, entrypoint: CHILD, args: [sleep]}`), opts{args: []string{"-control-address", addr, "-control-token-file", token}})
	w.waitLine(5*time.Second, "msg", "control API on TCP: its bearer token crosses the pod network in clear")
	if code, out, errs := ctlRun(t, nil, "-address", addr, "-token-file", token, "status"); code != 0 || !strings.Contains(out, "a ") {
		t.Errorf("with the token: exit %d %q %q", code, out, errs)
	}
	if code, _, errs := ctlRun(t, nil, "-address", addr, "-token-file", wrong, "status"); code != 1 || !strings.Contains(errs, "wrong bearer token (401)") {
		t.Errorf("a wrong token: exit %d %q", code, errs)
	}
	resp, err := http.Get("http://" + addr + "/v1/processes")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(b), "a bearer token is required") {
		t.Errorf("no token: %d %s", resp.StatusCode, b)
	}
	if code, _, errs := ctlRun(t, nil, "-address", addr, "status"); code != 2 || !strings.Contains(errs, "-address needs -token-file") {
		t.Errorf("ctl -address without -token-file: exit %d %q", code, errs)
	}
	// fails closed: no TCP listener without a readable, non-empty token
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, args := range [][]string{
		{"-control-address", "127.0.0.1:0"},
		{"-control-address", "127.0.0.1:0", "-control-token-file", empty},
		{"-control-address", "127.0.0.1:0", "-control-token-file", "/nonexistent/token"},
	} {
		w := start(t, config(t, `- {name: a, entrypoint: CHILD, args: [sleep]}`), opts{args: args})
		if code := w.wait(5 * time.Second); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
		if len(w.find("msg", "bad command line")) != 1 || len(w.find("msg", "process started")) != 0 {
			t.Errorf("%q:\n%s", args, w.dump())
		}
	}
}

// Bad requests get a JSON error with a fitting status.
func TestControlBadRequests(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `- {name: app, entrypoint: CHILD, args: [sleep]}`), opts{})
	w.waitLine(5*time.Second, "msg", "process started", "process", "app")
	c := unixClient(w.socket)
	for _, tc := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"GET", "/v2/processes", "", 404, "the API is under /v1/processes"},
		{"GET", "/v1/processes/app/extra/more", "", 404, "no such path"},
		{"DELETE", "/v1/processes", "", 405, "use GET"},
		{"GET", "/v1/processes/app/stop", "", 405, "use POST"},
		{"GET", "/v1/processes?verbose=1", "", 400, `unknown query parameter "verbose"`},
		{"POST", "/v1/processes/app/stop?force=1", "", 400, `unknown query parameter "force"`},
		{"POST", "/v1/processes/app/stop?dependents=maybe", "", 400, `dependents="maybe": want true or false`},
		{"POST", "/v1/processes/app/stop", "{}", 400, "this action takes no body"},
		{"POST", "/v1/processes/app/explode", "", 404, `no such action "explode"`},
		{"POST", "/v1/processes/ghost/start", "", 404, `no such process: "ghost"`},
		{"POST", "/v1/processes/app/start", "", 409, "app is already running"},
		{"POST", "/v1/processes/app/signal", `{"sig": "HUP"}`, 400, `unknown field "sig"`},
		{"POST", "/v1/processes/app/signal", `not json`, 400, "the body must be"},
		{"POST", "/v1/processes/app/signal", `{"signal": "SIGKILL"}`, 400, "use stop"},
		{"POST", "/v1/processes/app/signal", `{"signal": "99"}`, 400, "signal:"},
	} {
		req, _ := http.NewRequest(tc.method, "http://wrapper"+tc.path, strings.NewReader(tc.body))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e control.Error
		derr := json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tc.status || derr != nil || !strings.Contains(e.Error, tc.want) {
			t.Errorf("%s %s: %d %q (%v), want %d and %q", tc.method, tc.path, resp.StatusCode, e.Error, derr, tc.status, tc.want)
		}
	}
	if p := w.status("app"); p.State != "running" || p.Run != 1 {
		t.Errorf("the bad requests changed app: %+v", p)
	}
}

// ctl logs: a process's last lines as the wrapper wrote them, then, with
// -f, the lines that follow.
func TestCtlLogs(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: printer, entrypoint: CHILD, args: [print, one, two, three], restartPolicy: Never, logLabels: {team: core}}
- {name: ticker, entrypoint: CHILD, args: [tick, 50ms]}
- {name: quiet, entrypoint: CHILD, args: [sleep]}
`), opts{})
	w.waitLine(5*time.Second, "msg", "process completed", "process", "printer")
	waitfor.Condition(t, 5*time.Second, "printer's lines relayed", func() bool { return len(w.find("app", "printer", "msg", "three")) == 1 })
	out := w.ctlOK("logs", "-n", "2", "printer")
	got := strings.Split(strings.TrimSpace(out), "\n")
	if len(got) != 2 || decode([]byte(got[0] + "\n"))["msg"] != "two" || decode([]byte(got[1] + "\n"))["msg"] != "three" ||
		decode([]byte(got[1] + "\n"))["team"] != "core" {
		t.Errorf("ctl logs -n 2 printer: %q", out)
	}
	if out := w.ctlOK("logs", "quiet"); out != "" {
		t.Errorf("a process that wrote nothing: %q", out)
	}
	// -f: the lines as they come, until interrupted
	cmd := exec.Command(wrapperBin, "ctl", "-socket", w.socket, "logs", "-f", "-n", "0", "ticker")
	var buf syncbuf.Buffer
	cmd.Stdout = &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitfor.Condition(t, 5*time.Second, "three ticks followed", func() bool { return strings.Count(buf.String(), "app=ticker") >= 3 })
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if d := decode([]byte(l + "\n")); d["app"] != "ticker" || !strings.HasPrefix(d["msg"], "tick ") {
			t.Errorf("a followed line that is not ticker's: %q", l)
		}
	}
	if code, _, errs := w.ctl("logs", "-lines=-1", "ticker"); code != 2 || !strings.Contains(errs, "0 or more") {
		t.Errorf("ctl logs -n -1: exit %d %q", code, errs)
	}
	resp, err := unixClient(w.socket).Get("http://wrapper/v1/processes/ticker/logs?lines=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("lines=x: %d", resp.StatusCode)
	}
	if code, _, errs := w.ctl("logs", "ghost"); code != 1 || !strings.Contains(errs, "(404)") {
		t.Errorf("ctl logs ghost: exit %d %q", code, errs)
	}
}

// ctl start of a process waiting for its restart starts it at once, not at
// the end of its backoff.
func TestCtlStartDuringBackoff(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `- {name: crasher, entrypoint: CHILD, args: [exit, "1"]}`), opts{})
	l := w.waitLine(10*time.Second, "msg", "restarting process", "process", "crasher", "in", "4s")
	w.ctlOK("start", "crasher")
	waitfor.Condition(t, 5*time.Second, "the fourth run", func() bool { return len(w.find(started("crasher")...)) >= 4 })
	if d := ts(t, w.find(started("crasher")...)[3]).Sub(ts(t, l)); d > 3*time.Second {
		t.Errorf("the run after ctl start came %s after the 4 s backoff began: the start did not end it", d)
	}
}

// /status on -http-address: a read-only page of every process, and its
// JSON.
func TestStatusPage(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: db, entrypoint: CHILD, args: [sleep], readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}}
- {name: app, entrypoint: CHILD, args: [sleep], dependsOn: [{name: db, condition: ready}]}
- {name: "x<b>", entrypoint: CHILD, args: [exit, "0"], restartPolicy: Never}
`), opts{})
	base := w.url()
	w.waitLine(5*time.Second, started("app")...)
	w.ctlOK("stop", "app")
	code, body := httpGet(t, base+"/status")
	for _, want := range []string{"<td>db</td><td>running</td>", "<td>app</td><td>stopped (by request)</td>", "db (ready): met",
		"readiness exec: passing", "stopped by request of uid 0", "<td>x&lt;b&gt;</td>", `http-equiv="refresh"`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/status %d lacks %q:\n%s", code, want, body)
		}
	}
	code, body = httpGet(t, base+"/status?format=json")
	var list control.List
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || len(list.Processes) != 3 || !list.Processes[1].Held {
		t.Errorf("/status?format=json %d %v: %s", code, err, body)
	}
	resp, err := http.Post(base+"/status", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST /status: %d", resp.StatusCode)
	}
	if code, _ := httpGet(t, base+"/status?format=yaml"); code != 400 {
		t.Errorf("format=yaml: %d", code)
	}
}
