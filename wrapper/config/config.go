// Package config holds the wrapper's process list: the model, its strict
// loading from YAML or JSON (every error names the process, the field and
// the line, before anything starts), env files and Kubernetes' $(VAR)
// expansion.
package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"
)

// RestartPolicy says when a process that exited is started again.
type RestartPolicy string

// The restart policies, spelled as in a Kubernetes pod spec.
const (
	Always    RestartPolicy = "Always"
	OnFailure RestartPolicy = "OnFailure"
	Never     RestartPolicy = "Never"
)

// Process is one validated entry of the config.
type Process struct {
	Name string
	// Argv is the program and its arguments; $(VAR) references are expanded
	// against the process's environment at each start.
	Argv []string
	// Env is envs then the Kubernetes env list, in order; values may hold
	// $(VAR) references to the variables before them.
	Env []KV
	// EnvFiles are read at each start; envs win over them.
	EnvFiles      []string
	WorkingDir    string
	Credential    *syscall.Credential // nil: run as the wrapper's user
	Home          string              // the user's home directory when user is set
	Chroot        string
	RestartPolicy RestartPolicy
	StopSignal    syscall.Signal
	LogLabels     []KV
	// Startup, Readiness and Liveness are the probes, nil when not set.
	Startup, Readiness, Liveness *Probe
	// PostStart hooks run once per wrapper start, when every process is
	// ready for the first time.
	PostStart []Hook
	// SharedLock, when set, is taken from the shared-lock server before
	// each run.
	SharedLock *SharedLock
	// Metrics, when set, is where the process serves Prometheus metrics:
	// a target of /prommerge.
	Metrics *Metrics
	// DependsOn are the conditions other processes must meet before each
	// run of this one starts.
	DependsOn []Dependency
	// PreStop runs before the stop signal of each stop the wrapper starts.
	PreStop *PreStop
	// Budget, when set, bounds the restarts within a window.
	Budget *RestartBudget
	// Essential: its final state ends the wrapper, with its exit code.
	Essential bool
	Line      int // where the process is defined
}

// rawProcess is the config entry as written, Kubernetes aliases included.
type rawProcess struct {
	Name          string      `yaml:"name"`
	Entrypoint    string      `yaml:"entrypoint"`
	Command       []string    `yaml:"command"`
	Args          []string    `yaml:"args"`
	Envs          KVList      `yaml:"envs"`
	Env           []rawEnvVar `yaml:"env"`
	EnvFiles      []string    `yaml:"envFiles"`
	WorkingDir    string      `yaml:"workingDir"`
	User          string      `yaml:"user"`
	Group         string      `yaml:"group"`
	Chroot        string      `yaml:"chroot"`
	RestartPolicy string      `yaml:"restartPolicy"`
	StopSignal    string      `yaml:"stopSignal"`
	LogLabels     KVList      `yaml:"logLabels"`

	Startup        *rawProbe `yaml:"startup"`
	StartupProbe   *rawProbe `yaml:"startupProbe"`
	Readiness      *rawProbe `yaml:"readiness"`
	ReadinessProbe *rawProbe `yaml:"readinessProbe"`
	Liveness       *rawProbe `yaml:"liveness"`
	LivenessProbe  *rawProbe `yaml:"livenessProbe"`

	PostStart  []rawHook      `yaml:"postStart"`
	SharedLock *rawSharedLock `yaml:"sharedLock"`
	Metrics    *rawMetrics    `yaml:"metrics"`

	DependsOn            []rawDependency `yaml:"dependsOn"`
	Lifecycle            *rawLifecycle   `yaml:"lifecycle"`
	MaxRestarts          *int            `yaml:"maxRestarts"`
	RestartWindowSeconds *int            `yaml:"restartWindowSeconds"`
	Essential            bool            `yaml:"essential"`
}

type rawEnvVar struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// FieldError is one mistake in the config, with its position.
type FieldError struct {
	Source       string // file name, or "CONFIG"
	Line, Column int
	Process      string // name (or "#index") of the process it belongs to
	Field        string // dotted path inside the process
	Msg          string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:%d:", e.Line, e.Column)
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Process != "" {
		fmt.Fprintf(&b, "process %s: ", e.Process)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "field %q: ", e.Field)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Parse decodes and validates a config. source names it in errors (a file
// name, or "CONFIG" for the environment variable). All errors found are
// returned together, joined.
func Parse(source string, data []byte) ([]Process, error) {
	procs, _, err := parse(source, data, false)
	return procs, err
}

// ParseOffHost is Parse for a config checked away from the host it will
// run on (process-wrapper check in CI): what only that host can tell
// (unknown users and groups, missing env files) comes back as warnings,
// not errors.
func ParseOffHost(source string, data []byte) ([]Process, []error, error) {
	return parse(source, data, true)
}

func parse(source string, data []byte, offHost bool) ([]Process, []error, error) {
	if len(data) > MaxSize {
		return nil, nil, fmt.Errorf("%s: the config is %d bytes, more than %d (4 MiB; a ConfigMap holds 1 MiB)", source, len(data), MaxSize)
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && err != io.EOF {
		return nil, nil, fmt.Errorf("%s: %w", source, err)
	}
	// a second YAML document (---), or a second JSON value: an error where
	// it starts, not silently ignored with the processes it may hold
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			line, col := afterFlowList(data)
			return nil, nil, &FieldError{Source: source, Line: line, Column: col,
				Msg: fmt.Sprintf("after the list of processes: %v (the config is one list)", strings.TrimPrefix(err.Error(), "yaml: "))}
		}
		at := &extra
		if len(extra.Content) > 0 {
			at = extra.Content[0]
		}
		return nil, nil, &FieldError{Source: source, Line: at.Line, Column: at.Column,
			Msg: "a second document: the config is one list of processes (remove the '---' or what follows the list)"}
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, nil, fmt.Errorf("%s: the config is empty: it must be a list of processes", source)
	}
	doc := root.Content[0]
	if doc.Kind != yaml.SequenceNode {
		return nil, nil, &FieldError{Source: source, Line: doc.Line, Column: doc.Column,
			Msg: fmt.Sprintf("the config must be a list of processes, got %s", kindName(doc))}
	}
	if len(doc.Content) == 0 {
		return nil, nil, fmt.Errorf("%s: the config has no processes", source)
	}
	var errs, warns []error
	procs := make([]Process, 0, len(doc.Content))
	names := map[string]int{}
	for i, item := range doc.Content {
		id := fmt.Sprintf("#%d", i+1)
		if name := nameOf(item); name != "" {
			id = strconv.Quote(name)
		}
		d := &decoder{offHost: offHost}
		var raw rawProcess
		d.decode(item, reflect.ValueOf(&raw).Elem(), "")
		// what decoded is validated too: every mistake of a process is
		// reported at once, not only those of the first kind
		d.validating = true
		p := validate(d, item, &raw)
		if first, dup := names[raw.Name]; dup && raw.Name != "" {
			d.fail(item, "name", "duplicate process name (first defined at line %d)", first)
		} else if raw.Name != "" {
			names[raw.Name] = item.Line
		}
		// in the order of the file, decode and validation errors mixed
		slices.SortStableFunc(d.errs, func(a, b error) int {
			var fa, fb *FieldError
			if !errors.As(a, &fa) || !errors.As(b, &fb) {
				return 0
			}
			return cmp.Or(cmp.Compare(fa.Line, fb.Line), cmp.Compare(fa.Column, fb.Column))
		})
		for _, e := range d.errs {
			var fe *FieldError
			if errors.As(e, &fe) {
				fe.Source, fe.Process = source, id
			}
			errs = append(errs, e)
		}
		for _, w := range d.warns {
			w.(*FieldError).Source, w.(*FieldError).Process = source, id
			warns = append(warns, w)
		}
		procs = append(procs, p)
	}
	errs = append(errs, checkGraph(source, procs)...)
	if len(errs) > MaxErrors {
		more := len(errs) - MaxErrors
		errs = append(errs[:MaxErrors], fmt.Errorf("%s: and %d more errors", source, more))
	}
	if len(errs) > 0 {
		return nil, warns, errors.Join(errs...)
	}
	return procs, warns, nil
}

// MaxSize bounds a config: four times what a ConfigMap holds.
const MaxSize = 4 << 20

// MaxErrors is how many errors Parse returns; the rest are counted.
const MaxErrors = 100

func nameOf(n *yaml.Node) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" && n.Content[i+1].Kind == yaml.ScalarNode {
			return n.Content[i+1].Value
		}
	}
	return ""
}

// child returns the node of field name in mapping n, or n itself.
func child(n *yaml.Node, name string) *yaml.Node {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				return n.Content[i+1]
			}
		}
	}
	return n
}

func validate(d *decoder, n *yaml.Node, raw *rawProcess) Process {
	p := Process{
		Name:       raw.Name,
		EnvFiles:   raw.EnvFiles,
		WorkingDir: raw.WorkingDir,
		Chroot:     raw.Chroot,
		Line:       n.Line,
	}
	switch {
	case raw.Name == "":
		d.fail(n, "name", "required")
	case strings.ContainsFunc(raw.Name, func(r rune) bool { return r <= ' ' || r == '"' || r == '=' || r == 0x7f }):
		d.fail(child(n, "name"), "name", "must not hold spaces, quotes, '=' or control characters: %q", raw.Name)
	}

	switch {
	case raw.Entrypoint != "" && raw.Command != nil:
		d.fail(child(n, "command"), "command", "both entrypoint and command are set: use one (command is the Kubernetes spelling)")
	case raw.Entrypoint != "":
		p.Argv = append([]string{raw.Entrypoint}, raw.Args...)
	case len(raw.Command) > 0 && raw.Command[0] != "":
		p.Argv = append(append([]string(nil), raw.Command...), raw.Args...)
	default:
		d.fail(n, "entrypoint", "required: the program to run (or command, the Kubernetes spelling)")
	}

	// a NUL byte cannot cross execve: every start would fail
	nul := func(field, v string) {
		if strings.IndexByte(v, 0) >= 0 {
			root, _, _ := strings.Cut(strings.SplitN(field, "[", 2)[0], ".")
			d.fail(child(n, root), field, "holds a NUL byte, which no program's arguments or environment can carry")
		}
	}
	nul("entrypoint", raw.Entrypoint)
	for i, a := range raw.Command {
		nul(fmt.Sprintf("command[%d]", i), a)
	}
	for i, a := range raw.Args {
		nul(fmt.Sprintf("args[%d]", i), a)
	}
	for _, kv := range raw.Envs {
		nul("envs."+kv.Key, kv.Value)
	}
	for i, e := range raw.Env {
		nul(fmt.Sprintf("env[%d].value", i), e.Value)
	}
	nul("workingDir", raw.WorkingDir)
	nul("chroot", raw.Chroot)

	if raw.Envs != nil && raw.Env != nil {
		d.fail(child(n, "env"), "env", "both envs and env are set: use one (env is the Kubernetes spelling)")
	}
	for _, kv := range raw.Envs {
		if err := checkEnvName(kv.Key); err != nil {
			d.fail(child(child(n, "envs"), kv.Key), "envs."+kv.Key, "%v", err)
		}
		p.Env = append(p.Env, kv)
	}
	envNode := child(n, "env")
	for i, e := range raw.Env {
		item := envNode
		if envNode.Kind == yaml.SequenceNode && i < len(envNode.Content) {
			item = envNode.Content[i]
		}
		if err := checkEnvName(e.Name); err != nil {
			d.fail(item, fmt.Sprintf("env[%d].name", i), "%v", err)
		}
		p.Env = append(p.Env, KV{Key: e.Name, Value: e.Value, Line: item.Line})
	}
	for i, f := range raw.EnvFiles {
		if _, err := ReadEnvFile(f); err != nil {
			d.hostFail(child(n, "envFiles"), fmt.Sprintf("envFiles[%d]", i), "%v", err)
		}
	}

	switch RestartPolicy(raw.RestartPolicy) {
	case "":
		p.RestartPolicy = Always
	case Always, OnFailure, Never:
		p.RestartPolicy = RestartPolicy(raw.RestartPolicy)
	default:
		d.fail(child(n, "restartPolicy"), "restartPolicy", "must be Always, OnFailure or Never, got %q", raw.RestartPolicy)
	}

	p.StopSignal = syscall.SIGTERM
	stopSignal, stopField, stopNode := raw.StopSignal, "stopSignal", child(n, "stopSignal")
	if raw.Lifecycle != nil && raw.Lifecycle.StopSignal != "" {
		if stopSignal != "" {
			d.fail(child(child(n, "lifecycle"), "stopSignal"), "lifecycle.stopSignal", "both stopSignal and lifecycle.stopSignal are set: use one (lifecycle.stopSignal is the Kubernetes spelling)")
		}
		stopSignal, stopField, stopNode = raw.Lifecycle.StopSignal, "lifecycle.stopSignal", child(child(n, "lifecycle"), "stopSignal")
	}
	if stopSignal != "" {
		sig, err := ParseSignal(stopSignal)
		if err != nil {
			d.fail(stopNode, stopField, "%v", err)
		}
		p.StopSignal = sig
	}
	if raw.Lifecycle != nil && raw.Lifecycle.PreStop != nil {
		p.PreStop = validatePreStop(d, child(child(n, "lifecycle"), "preStop"), raw.Lifecycle.PreStop)
	}
	validateGraph(d, n, raw, &p)

	if raw.User != "" || raw.Group != "" {
		cred, home, err := credential(raw.User, raw.Group)
		if err != nil {
			field := "user"
			if errors.Is(err, errGroup) {
				field = "group"
			}
			d.hostFail(child(n, field), field, "%v", err)
		}
		p.Credential, p.Home = cred, home
	}
	for _, kv := range raw.LogLabels {
		switch kv.Key {
		case "ts", "level", "app", "stream", "msg", "partial":
			d.fail(child(child(n, "logLabels"), kv.Key), "logLabels."+kv.Key, "%q is a key of the line itself and cannot be a label", kv.Key)
		}
		if strings.ContainsFunc(kv.Key, func(r rune) bool { return r <= ' ' || r == '"' || r == '=' || r == 0x7f }) {
			d.fail(child(child(n, "logLabels"), kv.Key), "logLabels."+kv.Key, "a label name must not hold spaces, quotes, '=' or control characters")
		}
		p.LogLabels = append(p.LogLabels, kv)
	}
	for _, pr := range []struct {
		which, name, k8s string
		ours, theirs     *rawProbe
		dst              **Probe
	}{
		{"startup", "startup", "startupProbe", raw.Startup, raw.StartupProbe, &p.Startup},
		{"readiness", "readiness", "readinessProbe", raw.Readiness, raw.ReadinessProbe, &p.Readiness},
		{"liveness", "liveness", "livenessProbe", raw.Liveness, raw.LivenessProbe, &p.Liveness},
	} {
		switch {
		case pr.ours != nil && pr.theirs != nil:
			d.fail(child(n, pr.k8s), pr.k8s, "both %s and %s are set: use one (%s is the Kubernetes spelling)", pr.name, pr.k8s, pr.k8s)
		case pr.ours != nil:
			*pr.dst = validateProbe(d, child(n, pr.name), pr.name, pr.which, pr.ours)
		case pr.theirs != nil:
			*pr.dst = validateProbe(d, child(n, pr.k8s), pr.k8s, pr.which, pr.theirs)
		}
	}
	if raw.SharedLock != nil {
		p.SharedLock = validateSharedLock(d, child(n, "sharedLock"), raw.SharedLock)
	}
	if raw.Metrics != nil {
		p.Metrics = validateMetrics(d, child(n, "metrics"), raw.Metrics)
	}
	hooksNode := child(n, "postStart")
	for i := range raw.PostStart {
		item := hooksNode
		if hooksNode.Kind == yaml.SequenceNode && i < len(hooksNode.Content) {
			item = hooksNode.Content[i]
		}
		p.PostStart = append(p.PostStart, validateHook(d, item, fmt.Sprintf("postStart[%d]", i), p.Name, i, &raw.PostStart[i]))
	}
	return p
}

func checkEnvName(name string) error {
	if name == "" {
		return errors.New("an environment variable needs a name")
	}
	for i, r := range name {
		ok := r == '_' || r == '.' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("%q is not a valid environment variable name (letters, digits, '_', '-', '.', not starting with a digit)", name)
		}
	}
	return nil
}

var errGroup = errors.New("group")

type groupError struct{ err error }

func (e groupError) Error() string        { return e.err.Error() }
func (e groupError) Is(target error) bool { return target == errGroup }

// credential resolves user and group (numbers or names) to ids. A user given
// by name or by a uid that /etc/passwd knows brings its primary group, its
// supplementary groups and its home directory, as a container runtime does.
func credential(usr, grp string) (*syscall.Credential, string, error) {
	cred := &syscall.Credential{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), NoSetGroups: true}
	home := ""
	if usr != "" {
		var u *user.User
		if uid, err := strconv.ParseUint(usr, 10, 32); err == nil {
			cred.Uid = uint32(uid)
			cred.Gid = 0
			u, _ = user.LookupId(usr) // a uid without a passwd entry is fine, as in Kubernetes
		} else {
			u, err = user.Lookup(usr)
			if err != nil {
				return nil, "", fmt.Errorf("unknown user %q: %w", usr, err)
			}
			uid, _ := strconv.ParseUint(u.Uid, 10, 32)
			cred.Uid = uint32(uid)
		}
		if u != nil {
			gid, _ := strconv.ParseUint(u.Gid, 10, 32)
			cred.Gid = uint32(gid)
			home = u.HomeDir
			if ids, err := u.GroupIds(); err == nil {
				cred.NoSetGroups = false
				for _, id := range ids {
					if g, err := strconv.ParseUint(id, 10, 32); err == nil {
						cred.Groups = append(cred.Groups, uint32(g))
					}
				}
			}
		}
		if cred.Groups == nil {
			cred.NoSetGroups = false
			cred.Groups = []uint32{} // drop the wrapper's supplementary groups
		}
	}
	if grp != "" {
		if gid, err := strconv.ParseUint(grp, 10, 32); err == nil {
			cred.Gid = uint32(gid)
		} else {
			g, err := user.LookupGroup(grp)
			if err != nil {
				return nil, "", groupError{fmt.Errorf("unknown group %q: %w", grp, err)}
			}
			gid, _ := strconv.ParseUint(g.Gid, 10, 32)
			cred.Gid = uint32(gid)
		}
	}
	return cred, home, nil
}

// afterFlowList finds where the content after a flow list ([...], as CONFIG
// JSON writes it) starts, for an error at that place: yaml.v3 tells neither
// where a node ends nor where the content it could not parse begins. It
// returns 0, 0 when data is not a flow list.
func afterFlowList(data []byte) (line, col int) {
	line, col = 1, 1
	depth, inString, escaped, started := 0, false, false, false
	for _, c := range data {
		if started && depth == 0 && c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return line, col
		}
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == '[' || c == '{'):
			depth++
			started = true
		case !inString && (c == ']' || c == '}'):
			depth--
		case !started && c != ' ' && c != '\t' && c != '\n' && c != '\r':
			return 0, 0
		}
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return 0, 0
}
