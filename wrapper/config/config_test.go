package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

func TestParseValid(t *testing.T) {
	dir := t.TempDir()
	envFile := filepath.Join(dir, "app.env")
	if err := os.WriteFile(envFile, []byte("A=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := `
- name: "app-name"
  entrypoint: "sh"
  args: ["-c", "exec amqproxy -l $LISTEN_ADDRESS"]
  envs:
    LISTEN_ADDRESS: "0.0.0.0"
    PORT: 5673
  envFiles: ["` + envFile + `"]
  workingDir: "/srv"
  restartPolicy: OnFailure
  stopSignal: SIGQUIT
  logLabels: {team: core, tier: "1"}
- name: k8s-style
  command: ["/bin/app", "--flag"]
  args: ["x"]
  env:
    - name: A
      value: "b"
    - {name: C, value: "$(A)"}
  restartPolicy: Never
  stopSignal: "2"
`
	procs, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 2 {
		t.Fatalf("got %d processes", len(procs))
	}
	p := procs[0]
	if p.Name != "app-name" || !reflect.DeepEqual(p.Argv, []string{"sh", "-c", "exec amqproxy -l $LISTEN_ADDRESS"}) {
		t.Errorf("first process: %+v", p)
	}
	if p.RestartPolicy != OnFailure || p.StopSignal != syscall.SIGQUIT || p.WorkingDir != "/srv" {
		t.Errorf("first process fields: %+v", p)
	}
	if got := []KV{{Key: "LISTEN_ADDRESS", Value: "0.0.0.0"}, {Key: "PORT", Value: "5673"}}; !sameKVs(p.Env, got) {
		t.Errorf("envs: %+v", p.Env)
	}
	if !sameKVs(p.LogLabels, []KV{{Key: "team", Value: "core"}, {Key: "tier", Value: "1"}}) {
		t.Errorf("logLabels keep their order: %+v", p.LogLabels)
	}
	q := procs[1]
	if !reflect.DeepEqual(q.Argv, []string{"/bin/app", "--flag", "x"}) || q.RestartPolicy != Never || q.StopSignal != syscall.SIGINT {
		t.Errorf("second process: %+v", q)
	}
	if !sameKVs(q.Env, []KV{{Key: "A", Value: "b"}, {Key: "C", Value: "$(A)"}}) {
		t.Errorf("env list: %+v", q.Env)
	}
}

func sameKVs(a, b []KV) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].Value != b[i].Value {
			return false
		}
	}
	return true
}

func TestDefaults(t *testing.T) {
	procs, err := Parse("d.yaml", []byte("- {name: a, entrypoint: x}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := procs[0]
	if p.RestartPolicy != Always || p.StopSignal != syscall.SIGTERM || p.Credential != nil {
		t.Errorf("defaults: %+v", p)
	}
}

// Every error names the source, the line, the process and the field.
func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string
	}{
		{"not a list", "name: a\n", []string{"c.yaml:1:1:", "must be a list of processes, got a mapping"}},
		{"empty", "", []string{"c.yaml: the config is empty"}},
		{"empty list", "[]", []string{"has no processes"}},
		{"yaml syntax", "- name: [a\n", []string{"c.yaml: yaml:"}},
		{"unknown top field", "- name: a\n  entrypoint: x\n  restartpolicy: Never\n",
			[]string{`c.yaml:3:3: process "a": field "restartpolicy": unknown field (known fields: name, entrypoint,`}},
		{"unknown field in env list", "- name: a\n  entrypoint: x\n  env:\n    - name: A\n      valueFrom: {}\n",
			[]string{`c.yaml:5:7: process "a": field "env[0].valueFrom": unknown field (known fields: name, value)`}},
		{"missing name", "- entrypoint: x\n", []string{`c.yaml:1:3: process #1: field "name": required`}},
		{"missing entrypoint", "- name: a\n", []string{`process "a": field "entrypoint": required`}},
		{"empty command", "- name: a\n  command: []\n", []string{`process "a": field "entrypoint": required`}},
		{"both entrypoint and command", "- name: a\n  entrypoint: x\n  command: [y]\n",
			[]string{`c.yaml:3:12: process "a": field "command": both entrypoint and command are set`}},
		{"both envs and env", "- name: a\n  entrypoint: x\n  envs: {A: b}\n  env: [{name: A, value: b}]\n",
			[]string{`process "a": field "env": both envs and env are set`}},
		{"duplicate names", "- {name: a, entrypoint: x}\n- {name: a, entrypoint: y}\n",
			[]string{`c.yaml:2:3: process "a": field "name": duplicate process name (first defined at line 1)`}},
		{"duplicate key", "- name: a\n  entrypoint: x\n  entrypoint: y\n",
			[]string{`c.yaml:3:3: process "a": field "entrypoint": duplicate field (first at line 2)`}},
		{"duplicate env key", "- name: a\n  entrypoint: x\n  envs: {A: 1, A: 2}\n",
			[]string{`process "a": field "envs.A": duplicate key`}},
		{"args not a list", "- name: a\n  entrypoint: x\n  args: -c\n",
			[]string{`c.yaml:3:9: process "a": field "args": expected a list, got str "-c"`}},
		{"arg not a string", "- name: a\n  entrypoint: x\n  args: [{a: b}]\n",
			[]string{`process "a": field "args[0]": expected a string, got a mapping`}},
		{"envs not a mapping", "- name: a\n  entrypoint: x\n  envs: [A]\n",
			[]string{`field "envs": expected a mapping of names to strings, got a list`}},
		{"bad env name", "- name: a\n  entrypoint: x\n  envs: {\"1A\": b}\n",
			[]string{`field "envs.1A": "1A" is not a valid environment variable name`}},
		{"bad restart policy", "- name: a\n  entrypoint: x\n  restartPolicy: always\n",
			[]string{`c.yaml:3:18: process "a": field "restartPolicy": must be Always, OnFailure or Never, got "always"`}},
		{"bad stop signal", "- name: a\n  entrypoint: x\n  stopSignal: SIGFOO\n",
			[]string{`field "stopSignal": unknown signal "SIGFOO"`}},
		{"unknown user", "- name: a\n  entrypoint: x\n  user: no-such-user-here\n",
			[]string{`field "user": unknown user "no-such-user-here"`}},
		{"unknown group", "- name: a\n  entrypoint: x\n  group: no-such-group-here\n",
			[]string{`field "group": unknown group "no-such-group-here"`}},
		{"missing env file", "- name: a\n  entrypoint: x\n  envFiles: [/no/such/file.env]\n",
			[]string{`field "envFiles[0]": env file: open /no/such/file.env`}},
		{"label shadows a key", "- name: a\n  entrypoint: x\n  logLabels: {msg: x}\n",
			[]string{`field "logLabels.msg": "msg" is a key of the line itself`}},
		{"name with space", "- name: a b\n  entrypoint: x\n", []string{`field "name": must not hold spaces`}},
		{"process not a mapping", "- just-a-string\n", []string{`process #1: expected a mapping, got str "just-a-string"`}},
		{"json unknown field", `[{"name": "a", "entrypoint": "x", "extra": 1}]`,
			[]string{`c.yaml:1:35: process "a": field "extra": unknown field`}},
		{"metrics without port", "- name: a\n  entrypoint: x\n  metrics: {path: /m}\n",
			[]string{`c.yaml:3:12: process "a": field "metrics.port": required: 1 to 65535, got 0`}},
		{"metrics bad path", "- name: a\n  entrypoint: x\n  metrics: {port: 9090, path: metrics}\n",
			[]string{`field "metrics.path": must be a URL path starting with '/', got "metrics"`}},
		{"metrics unknown field", "- name: a\n  entrypoint: x\n  metrics: {port: 9090, host: evil.example}\n",
			[]string{`field "metrics.host": unknown field (known fields: port, path)`}},
		{"several errors at once", "- name: a\n  entrypoint: x\n  bogus: 1\n- name: b\n  entrypoint: y\n  restartPolicy: Sometimes\n",
			[]string{`field "bogus": unknown field`, `process "b": field "restartPolicy"`}},
		{"five errors of one process", "- name: a\n  entrypoint: x\n  bogus: 1\n  restartPolicy: Sometimes\n  stopSignal: SIGNOPE\n" +
			"  readiness: {tcp: {socket: x}, periodSeconds: soon}\n  logLabels: {msg: forged}\n",
			[]string{`c.yaml:3:3: process "a": field "bogus": unknown field`, `c.yaml:4:18: process "a": field "restartPolicy"`,
				`c.yaml:5:15: process "a": field "stopSignal"`, `c.yaml:6:48: process "a": field "readiness.periodSeconds"`,
				`c.yaml:7:20: process "a": field "logLabels.msg"`}},
		{"a second YAML document", "- name: a\n  entrypoint: x\n---\n- name: b\n  bogus: 1\n",
			[]string{`c.yaml:4:1: a second document`}},
		{"a second JSON value", `[{"name": "a", "entrypoint": "x"}] [{"name": "b", "bogus": 1}]`,
			[]string{`c.yaml:1:36: after the list of processes: did not find expected <document start>`}},
		{"trailing garbage after JSON", `[{"name": "a", "entrypoint": "x"}]\n  }`, []string{`c.yaml:1:35: after the list of processes`}},
		{"seconds beyond int32", "- name: a\n  entrypoint: x\n  readiness: {tcp: {socket: x}, periodSeconds: 9223372036, timeoutSeconds: 2147483648}\n",
			[]string{`field "readiness.periodSeconds": must be at most 2147483647 seconds`, `field "readiness.timeoutSeconds": must be at most 2147483647 seconds`}},
		{"a quoted number", "- name: a\n  entrypoint: x\n  readiness: {tcp: {socket: x}, periodSeconds: \"10\"}\n",
			[]string{`field "readiness.periodSeconds": expected an integer, got str "10"`}},
		{"NUL bytes", "- name: a\n  entrypoint: \"x\\0\"\n  args: [\"a\\0b\"]\n  envs: {K: \"v\\0\"}\n",
			[]string{`c.yaml:2:15: process "a": field "entrypoint": holds a NUL byte`, `c.yaml:3:9: process "a": field "args[0]": holds a NUL byte`,
				`c.yaml:4:9: process "a": field "envs.K": holds a NUL byte`}},
		{"a malformed DSN with a password", "- name: a\n  entrypoint: x\n  readiness: {sql: {dsn: 'postgres://app:s3/cr#et@db/x'}}\n" +
			"  liveness: {amqp: {dsn: 'amqp://app:s3cret%zz@mq/'}}\n  startup: {http: {url: 'http://u:s3cret@h:port/x'}}\n",
			[]string{`c.yaml:3:26: process "a": field "readiness.sql.dsn": not a valid URL`, `c.yaml:4:26: process "a": field "liveness.amqp.dsn": not a valid URL`,
				`c.yaml:5:25: process "a": field "startup.http.url"`}},
		{"a field that fails to decode is not also missing", "- name: a\n  entrypoint: {x: 1}\n  restartPolicy: Sometimes\n",
			[]string{`field "entrypoint": expected a string`, `field "restartPolicy"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tc.src))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3") {
				t.Errorf("a secret is shown: %v", err)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n > len(tc.want) && len(tc.want) > 1 {
				t.Errorf("%d errors, want %d (each mistake once):\n%v", n, len(tc.want), err)
			}
		})
	}
}

func TestCredential(t *testing.T) {
	procs, err := Parse("c.yaml", []byte("- {name: a, entrypoint: x, user: root}\n- {name: b, entrypoint: x, user: 4321, group: 99}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c := procs[0].Credential; c == nil || c.Uid != 0 || c.Gid != 0 || procs[0].Home != "/root" {
		t.Errorf("user root: %+v home %q", c, procs[0].Home)
	}
	if c := procs[1].Credential; c == nil || c.Uid != 4321 || c.Gid != 99 || c.NoSetGroups {
		t.Errorf("numeric user and group: %+v", c)
	}
}

func TestEnvFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.env")
	os.WriteFile(good, []byte(`# comment
A=1

export B = two words
C="quoted \"x\"\n"
D='single $(A) # not a comment'
E=value # with hash
F=
`), 0o644)
	kvs, err := ReadEnvFile(good)
	if err != nil {
		t.Fatal(err)
	}
	want := []KV{{Key: "A", Value: "1"}, {Key: "B", Value: "two words"}, {Key: "C", Value: "quoted \"x\"\n"},
		{Key: "D", Value: "single $(A) # not a comment"}, {Key: "E", Value: "value # with hash"}, {Key: "F", Value: ""}}
	if !sameKVs(kvs, want) {
		t.Errorf("got %+v", kvs)
	}
	for name, body := range map[string]string{
		"noequals.env": "A=1\nJUSTAKEY\n",
		"badname.env":  "A=1\n9X=2\n",
		"unterm.env":   "A=1\nB=\"open\n",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := ReadEnvFile(p); err == nil || !strings.Contains(err.Error(), p+":2:") {
			t.Errorf("%s: error %v does not name file and line 2", name, err)
		}
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "x", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	for in, want := range map[string]string{
		"plain":            "plain",
		"$(A)":             "x",
		"a$(A)b$(A)":       "axbx",
		"$(MISSING)":       "$(MISSING)",
		"$$(A)":            "$(A)",
		"$$$(A)":           "$x",
		"$$":               "$",
		"$":                "$",
		"$A":               "$A",
		"$(A":              "$(A",
		"$(EMPTY)-":        "-",
		"cost: $5 $(A)":    "cost: $5 x",
		"nested $($(A))":   "nested $($(A))",
		"unicode é $(A) é": "unicode é x é",
	} {
		if got := Expand(in, lookup); got != want {
			t.Errorf("Expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnviron(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "e.env")
	os.WriteFile(f, []byte("FROM_FILE=file\nOVERRIDE=file\n"), 0o644)
	p := Process{
		Argv:     []string{"prog", "$(GREETING)", "$$(GREETING)"},
		EnvFiles: []string{f},
		Env:      []KV{{Key: "OVERRIDE", Value: "envs"}, {Key: "GREETING", Value: "hi $(FROM_FILE) $(INHERITED)"}},
	}
	base := []string{"INHERITED=yes", "CONFIG=[secret]", "AMQP_PROBE_RABBITMQ_PASS=pw", "POD_NAMESPACE=ns", "HOSTNAME=h", "NODE_NAME=n", "LOG_FORMAT=auto"}
	env, argv, err := p.Environ(base)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(env, "\n")
	for _, want := range []string{"INHERITED=yes", "POD_NAMESPACE=ns", "HOSTNAME=h", "NODE_NAME=n", "FROM_FILE=file", "OVERRIDE=envs", "GREETING=hi file yes"} {
		if !strings.Contains(got, want+"\n") && !strings.HasSuffix(got, want) {
			t.Errorf("env lacks %s:\n%s", want, got)
		}
	}
	for _, gone := range []string{"CONFIG=", "AMQP_PROBE_RABBITMQ_PASS=", "LOG_FORMAT="} {
		if strings.Contains(got, gone) {
			t.Errorf("env keeps the wrapper's own %s", gone)
		}
	}
	if !reflect.DeepEqual(argv, []string{"prog", "hi file yes", "$(GREETING)"}) {
		t.Errorf("argv = %q", argv)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"SIGTERM": 15, "TERM": 15, "sigquit": 3, "9": 9, "SIGRTMIN": 34, "SIGRTMIN+3": 37, "SIGRTMAX-1": 63} {
		got, err := ParseSignal(in)
		if err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "SIGNOPE", "0", "65", "SIGRTMIN+40", "RTMINx"} {
		if _, err := ParseSignal(bad); err == nil {
			t.Errorf("ParseSignal(%q) accepted", bad)
		}
	}
	if SignalName(syscall.SIGABRT) != "SIGABRT" || SignalName(syscall.SIGTERM) != "SIGTERM" {
		t.Error("SignalName")
	}
}

// FuzzParse: no input makes the loader panic, and what it accepts is valid.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"- {name: a, entrypoint: x}\n",
		"- name: a\n  command: [x, y]\n  env: [{name: A, value: b}]\n  logLabels: {k: v}\n",
		`[{"name":"a","entrypoint":"x","args":["1"],"envs":{"A":"B"},"restartPolicy":"Never"}]`,
		"- name: a\n  entrypoint: x\n  user: 1000\n  group: 1000\n  stopSignal: SIGRTMIN+1\n",
		"- &a {name: a, entrypoint: x}\n- *a\n",
		"- name: a\n  entrypoint: x\n  envs: &e {A: b}\n  logLabels: *e\n",
		"{}", "[1, 2]", "- name: [", "- ~\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		procs, err := Parse("fuzz", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		seen := map[string]bool{}
		for _, p := range procs {
			if p.Name == "" || len(p.Argv) == 0 || p.Argv[0] == "" || seen[p.Name] {
				t.Fatalf("accepted an invalid process %+v", p)
			}
			seen[p.Name] = true
		}
	})
}

// The demo of `make run` stays a valid config.
func TestDemoConfig(t *testing.T) {
	b, err := os.ReadFile("../../examples/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	procs, err := Parse("examples/demo.yaml", b)
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) < 3 {
		t.Errorf("the demo has %d processes", len(procs))
	}
}

func TestMetricsTarget(t *testing.T) {
	procs, err := Parse("m.yaml", []byte("- {name: a, entrypoint: x, metrics: {port: 9090}}\n- {name: b, entrypoint: x, metrics: {port: 1, path: /stats/prometheus}}\n- {name: c, entrypoint: x}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m := procs[0].Metrics; m == nil || *m != (Metrics{Port: 9090, Path: "/metrics"}) {
		t.Errorf("a: %+v", m)
	}
	if m := procs[1].Metrics; m == nil || *m != (Metrics{Port: 1, Path: "/stats/prometheus"}) {
		t.Errorf("b: %+v", m)
	}
	if procs[2].Metrics != nil {
		t.Errorf("c: %+v", procs[2].Metrics)
	}
}

// A config larger than 4 MiB is refused before it is parsed, and the
// errors of a config of many bad processes stop at 100, then a count.
func TestParseBounds(t *testing.T) {
	big := "- {name: a, entrypoint: x, args: [\"" + strings.Repeat("x", MaxSize) + "\"]}\n"
	if _, err := Parse("c.yaml", []byte(big)); err == nil || !strings.Contains(err.Error(), "more than 4194304") {
		t.Errorf("a %d-byte config: %v", len(big), err)
	}
	var b strings.Builder
	for i := range 150 {
		fmt.Fprintf(&b, "- {name: p%d, entrypoint: x, bogus: 1}\n", i)
	}
	_, err := Parse("c.yaml", []byte(b.String()))
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != MaxErrors+1 || lines[MaxErrors] != "c.yaml: and 50 more errors" {
		t.Errorf("%d lines, the last %q", len(lines), lines[len(lines)-1])
	}
}

// An env file's value with a NUL byte is refused where it is read.
func TestEnvFileNUL(t *testing.T) {
	p := filepath.Join(t.TempDir(), "app.env")
	os.WriteFile(p, []byte("OK=1\nBAD=\"a\\x00b\"\nRAW=a\x00b\n"), 0o644)
	if _, err := ReadEnvFile(p); err == nil || !strings.Contains(err.Error(), "NUL byte") {
		t.Errorf("env file with a NUL: %v", err)
	}
}
