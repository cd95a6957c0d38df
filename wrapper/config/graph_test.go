package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestGraphValid(t *testing.T) {
	procs, err := Parse("g.yaml", []byte(`
- {name: migrate, entrypoint: /app/migrate, restartPolicy: OnFailure}
- name: cache
  entrypoint: /app/cache
  readinessProbe: {tcpSocket: {port: 6379}}
- name: app
  entrypoint: /app/server
  dependsOn:
    - {name: migrate, condition: completedSuccessfully}
    - {name: cache, condition: ready, timeoutSeconds: 60}
  lifecycle:
    preStop: {exec: {command: [/app/drain, now]}}
  maxRestarts: 5
  restartWindowSeconds: 120
  essential: true
- name: ship
  entrypoint: /app/ship
  dependsOn: [{name: app, condition: started}]
  lifecycle: {preStop: {httpGet: {path: /drain, port: 9000}}, stopSignal: SIGINT}
  maxRestarts: 0
- name: late
  entrypoint: /app/late
  lifecycle: {preStop: {sleep: {seconds: 3}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	app := procs[2]
	want := []Dependency{
		{Name: "migrate", Condition: CompletedSuccessfully, Index: 0, Line: 9, Col: 14},
		{Name: "cache", Condition: Ready, Timeout: time.Minute, Index: 1, Line: 10, Col: 14},
	}
	if !reflect.DeepEqual(app.DependsOn, want) {
		t.Errorf("dependsOn: %#v", app.DependsOn)
	}
	if app.PreStop == nil || !reflect.DeepEqual(app.PreStop.Exec, []string{"/app/drain", "now"}) {
		t.Errorf("preStop: %+v", app.PreStop)
	}
	if *app.Budget != (RestartBudget{Max: 5, Window: 2 * time.Minute}) || !app.Essential {
		t.Errorf("budget %+v essential %v", app.Budget, app.Essential)
	}
	ship := procs[3]
	if ship.PreStop.HTTPGet == nil || ship.PreStop.HTTPGet.URL != "http://127.0.0.1:9000/drain" || ship.PreStop.Kind() != "httpGet" {
		t.Errorf("httpGet preStop: %+v", ship.PreStop.HTTPGet)
	}
	if ship.StopSignal.String() != "interrupt" {
		t.Errorf("lifecycle.stopSignal: %v", ship.StopSignal)
	}
	if *ship.Budget != (RestartBudget{Max: 0, Window: DefaultRestartWindow}) {
		t.Errorf("maxRestarts 0: %+v", ship.Budget)
	}
	if procs[4].PreStop.Sleep != 3*time.Second || procs[4].PreStop.Kind() != "sleep" {
		t.Errorf("sleep preStop: %+v", procs[4].PreStop)
	}
	if procs[0].Budget != nil || procs[0].Essential || procs[0].DependsOn != nil {
		t.Errorf("defaults: %+v", procs[0])
	}
	levels := Levels(procs)
	if want := [][]string{{"migrate", "cache", "late"}, {"app"}, {"ship"}}; !reflect.DeepEqual(levels, want) {
		t.Errorf("levels %v, want %v", levels, want)
	}
}

func TestGraphErrors(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string // each must appear, in order
	}{
		{"unknown name", `
- {name: a, entrypoint: x, dependsOn: [{name: nobody, condition: started}]}`,
			[]string{`g.yaml:2:47: process "a": field "dependsOn[0].name": no process is named "nobody"`}},
		{"itself", `
- {name: a, entrypoint: x, dependsOn: [{name: a, condition: started}]}`,
			[]string{`g.yaml:2:47: process "a": field "dependsOn[0].name": a process cannot depend on itself`}},
		{"cycle", `
- {name: a, entrypoint: x, restartPolicy: Never, dependsOn: [{name: b, condition: started}]}
- {name: b, entrypoint: x, dependsOn: [{name: c, condition: ready}]}
- {name: c, entrypoint: x, dependsOn: [{name: a, condition: completed}]}`,
			[]string{`g.yaml:4:47: process "c": field "dependsOn[0].name": a cycle: a -> b -> c -> a (each waits for the next)`}},
		{"never completes", `
- {name: a, entrypoint: x}
- {name: b, entrypoint: x, dependsOn: [{name: a, condition: completedSuccessfully}]}
- {name: c, entrypoint: x, dependsOn: [{name: a, condition: completed}]}
- {name: d, entrypoint: x, maxRestarts: 2}
- {name: e, entrypoint: x, dependsOn: [{name: d, condition: completed}]}`,
			[]string{
				`process "b": field "dependsOn[0].condition": a has restartPolicy Always: it never completes, so completedSuccessfully can never be met`,
				`process "c": field "dependsOn[0].condition": a has restartPolicy Always, no maxRestarts and no dependsOn`,
			}},
		{"fields", `
- name: a
  entrypoint: x
  dependsOn:
    - {condition: started}
    - {name: b, condition: soon, timeoutSeconds: 0}
    - {name: b}
  maxRestarts: -1
  restartWindowSeconds: 0
- name: b
  entrypoint: x
  restartWindowSeconds: 10
  essential: "yes"
  lifecycle:
    preStop: {exec: {command: [x]}, sleep: {seconds: 1}}
    stopSignal: SIGFOO
  stopSignal: SIGTERM
- name: c
  entrypoint: x
  lifecycle: {preStop: {httpGet: {path: /x}}}
- name: c2
  entrypoint: x
  lifecycle: {postStart: {}}
- name: d
  entrypoint: x
  lifecycle: {preStop: {sleep: {}}}`,
			[]string{
				`g.yaml:5:7: process "a": field "dependsOn[0].name": required`,
				`g.yaml:6:28: process "a": field "dependsOn[1].condition": must be started, ready, completed or completedSuccessfully, got "soon"`,
				`field "dependsOn[1].timeoutSeconds": must be at least 1`,
				`g.yaml:7:7: process "a": field "dependsOn[2].condition": required`,
				`g.yaml:7:14: process "a": field "dependsOn[2].name": b is already listed at dependsOn[1]`,
				`field "maxRestarts": must be at least 0, got -1`,
				`field "restartWindowSeconds": must be at least 1, got 0`,
				`process "b": field "restartWindowSeconds": needs maxRestarts`,
				`process "b": field "essential": expected true or false, got str "yes"`,
				`process "b": field "lifecycle.preStop": has several handlers (exec, sleep): use one`,
				`process "b": field "lifecycle.stopSignal": both stopSignal and lifecycle.stopSignal are set`,
				`process "c": field "lifecycle.preStop.httpGet.port": required`,
				`process "c2": field "lifecycle.postStart": unknown field (known fields: preStop, stopSignal)`,
				`process "d": field "lifecycle.preStop.sleep.seconds": required`,
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("g.yaml", []byte(tc.src))
			if err == nil {
				t.Fatal("no error")
			}
			msg, rest := err.Error(), err.Error()
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("missing (or out of order) %q in:\n%s", w, msg)
					continue
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestSkipDropsEdges(t *testing.T) {
	procs, err := Parse("g.yaml", []byte(`
- {name: cache, entrypoint: x}
- {name: db, entrypoint: x}
- {name: app, entrypoint: x, dependsOn: [{name: cache, condition: ready}, {name: db, condition: started}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var log recordLog
	kept := Skip(procs, []string{"cache", " ", "ghost"}, &log)
	if len(kept) != 2 || kept[1].Name != "app" {
		t.Fatalf("kept %+v", kept)
	}
	if want := []Dependency{procs[2].DependsOn[1]}; !reflect.DeepEqual(kept[1].DependsOn, want) {
		t.Errorf("edges left: %+v", kept[1].DependsOn)
	}
	if len(procs[2].DependsOn) != 2 {
		t.Errorf("Skip changed its input: %+v", procs[2].DependsOn)
	}
	want := []string{
		"info skipping process [process cache]",
		"warn -skip-commands names a process the config lacks [process ghost]",
		"warn dropping a dependsOn edge to a skipped process: the process starts without waiting for it [process app edge dependsOn[0] waits_for cache (ready)]",
	}
	if !reflect.DeepEqual(log, recordLog(want)) {
		t.Errorf("log:\n%s", strings.Join(log, "\n"))
	}
}

func TestParseOffHost(t *testing.T) {
	src := []byte(`
- {name: a, entrypoint: x, user: no-such-user-here, envFiles: [/no/such/file.env]}
- {name: b, entrypoint: x, group: no-such-group-here}`)
	if _, err := Parse("g.yaml", src); err == nil {
		t.Fatal("Parse accepts an unknown user")
	}
	procs, warns, err := ParseOffHost("g.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 2 || len(warns) != 3 {
		t.Fatalf("procs %d, warnings %v", len(procs), warns)
	}
	for i, w := range []string{`process "a": field "envFiles[0]"`, `process "a": field "user": unknown user`, `process "b": field "group": unknown group`} {
		if !strings.Contains(warns[i].Error(), w) {
			t.Errorf("warning %d: %v, want %q", i, warns[i], w)
		}
	}
}

type recordLog []string

func (l *recordLog) Info(msg string, kv ...any) { l.add("info", msg, kv) }
func (l *recordLog) Warn(msg string, kv ...any) { l.add("warn", msg, kv) }
func (l *recordLog) add(lvl, msg string, kv []any) {
	parts := make([]string, len(kv))
	for i, v := range kv {
		parts[i] = v.(string)
	}
	*l = append(*l, lvl+" "+msg+" ["+strings.Join(parts, " ")+"]")
}
