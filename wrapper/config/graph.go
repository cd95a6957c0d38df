package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Condition is what a dependency must reach before its dependent starts.
type Condition string

// The conditions of a dependsOn edge.
const (
	// Started: its main pid exists (a process waiting for its shared lock
	// has not started).
	Started Condition = "started"
	// Ready: started, its startup probe has passed and its readiness
	// probe passes; without probes, ready once started.
	Ready Condition = "ready"
	// Completed: it has reached a final state, completed or failed for good.
	Completed Condition = "completed"
	// CompletedSuccessfully: it completed with exit code 0.
	CompletedSuccessfully Condition = "completedSuccessfully"
)

// Dependency is one dependsOn edge: the process waits until Name meets
// Condition, for at most Timeout (0: no limit).
type Dependency struct {
	Name      string
	Condition Condition
	Timeout   time.Duration
	Index     int // its place in the process's dependsOn list
	Line, Col int
}

// String names the edge as logs and /readiness do: "cache (ready)".
func (d Dependency) String() string { return fmt.Sprintf("%s (%s)", d.Name, d.Condition) }

// Persistent reports whether the edge, once met, stays met for the
// dependent's later runs: a final state does not change.
func (d Dependency) Persistent() bool {
	return d.Condition == Completed || d.Condition == CompletedSuccessfully
}

type rawDependency struct {
	Name           string `yaml:"name"`
	Condition      string `yaml:"condition"`
	TimeoutSeconds *int   `yaml:"timeoutSeconds"`
}

// DefaultRestartWindow is restartWindowSeconds when maxRestarts is set
// without it.
const DefaultRestartWindow = 300 * time.Second

// RestartBudget bounds a process's restarts: more than Max within Window
// makes it failed for good, whatever its restartPolicy.
type RestartBudget struct {
	Max    int
	Window time.Duration
}

// validateGraph reads dependsOn, maxRestarts, restartWindowSeconds and
// essential: what can be checked inside one process.
func validateGraph(d *decoder, n *yaml.Node, raw *rawProcess, p *Process) {
	depsNode := child(n, "dependsOn")
	seen := map[string]int{}
	for i, rd := range raw.DependsOn {
		item := depsNode
		if depsNode.Kind == yaml.SequenceNode && i < len(depsNode.Content) {
			item = depsNode.Content[i]
		}
		field := fmt.Sprintf("dependsOn[%d]", i)
		at := child(item, "name")
		dep := Dependency{Name: rd.Name, Condition: Condition(rd.Condition), Index: i, Line: at.Line, Col: at.Column}
		switch {
		case rd.Name == "":
			d.fail(item, field+".name", "required: the name of the process to wait for")
		case rd.Name == raw.Name:
			d.fail(at, field+".name", "a process cannot depend on itself")
		}
		if j, dup := seen[rd.Name]; dup && rd.Name != "" {
			d.fail(at, field+".name", "%s is already listed at dependsOn[%d]: give one condition per process", rd.Name, j)
		}
		seen[rd.Name] = i
		switch dep.Condition {
		case Started, Ready, Completed, CompletedSuccessfully:
		case "":
			d.fail(item, field+".condition", "required: started, ready, completed or completedSuccessfully")
		default:
			d.fail(child(item, "condition"), field+".condition", "must be started, ready, completed or completedSuccessfully, got %q", rd.Condition)
		}
		if rd.TimeoutSeconds != nil {
			if *rd.TimeoutSeconds < 1 {
				d.fail(child(item, "timeoutSeconds"), field+".timeoutSeconds", "must be at least 1, got %d (leave it out to wait without a limit)", *rd.TimeoutSeconds)
			}
			dep.Timeout = time.Duration(*rd.TimeoutSeconds) * time.Second
		}
		p.DependsOn = append(p.DependsOn, dep)
	}
	if raw.MaxRestarts != nil {
		if *raw.MaxRestarts < 0 {
			d.fail(child(n, "maxRestarts"), "maxRestarts", "must be at least 0, got %d", *raw.MaxRestarts)
		}
		p.Budget = &RestartBudget{Max: *raw.MaxRestarts, Window: DefaultRestartWindow}
	}
	if raw.RestartWindowSeconds != nil {
		switch {
		case raw.MaxRestarts == nil:
			d.fail(child(n, "restartWindowSeconds"), "restartWindowSeconds", "needs maxRestarts: the number of restarts allowed within the window")
		case *raw.RestartWindowSeconds < 1:
			d.fail(child(n, "restartWindowSeconds"), "restartWindowSeconds", "must be at least 1, got %d", *raw.RestartWindowSeconds)
		default:
			p.Budget.Window = time.Duration(*raw.RestartWindowSeconds) * time.Second
		}
	}
	p.Essential = raw.Essential
}

// checkGraph checks the edges between processes: unknown names, conditions
// the dependency can never meet, and cycles. procs and nodes are in config
// order; every error names the place of the edge.
func checkGraph(source string, procs []Process) []error {
	index := make(map[string]int, len(procs))
	for i, p := range procs {
		if _, dup := index[p.Name]; !dup && p.Name != "" {
			index[p.Name] = i
		}
	}
	var errs []error
	fail := func(p *Process, dep Dependency, field, format string, a ...any) {
		errs = append(errs, &FieldError{Source: source, Line: dep.Line, Column: dep.Col, Process: strconv.Quote(p.Name),
			Field: fmt.Sprintf("dependsOn[%d].%s", dep.Index, field), Msg: fmt.Sprintf(format, a...)})
	}
	known := func(dep Dependency) bool { _, ok := index[dep.Name]; return ok && dep.Name != "" }
	for i := range procs {
		p := &procs[i]
		for _, dep := range p.DependsOn {
			if dep.Name == "" || dep.Name == p.Name {
				continue // reported where the edge was read
			}
			j, ok := index[dep.Name]
			if !ok {
				fail(p, dep, "name", "no process is named %q", dep.Name)
				continue
			}
			q := &procs[j]
			if q.RestartPolicy == Always {
				switch {
				case dep.Condition == CompletedSuccessfully:
					fail(p, dep, "condition", "%s has restartPolicy Always: it never completes, so %s can never be met (give it OnFailure or Never)", q.Name, dep.Condition)
				case dep.Condition == Completed && q.Budget == nil && len(q.DependsOn) == 0:
					// only a spent budget or an edge that fails ends it
					fail(p, dep, "condition", "%s has restartPolicy Always, no maxRestarts and no dependsOn: it never reaches a final state, so completed can never be met", q.Name)
				}
			}
		}
	}
	// cycles: a depth-first walk; an edge back to a process on the walk's
	// path closes a cycle, reported once with its whole path
	const (
		unseen = iota
		onPath
		done
	)
	mark := make([]int, len(procs))
	var path []int
	var walk func(i int)
	walk = func(i int) {
		mark[i] = onPath
		path = append(path, i)
		for _, dep := range procs[i].DependsOn {
			if !known(dep) || dep.Name == procs[i].Name {
				continue
			}
			j := index[dep.Name]
			switch mark[j] {
			case unseen:
				walk(j)
			case onPath:
				start := slices.Index(path, j)
				names := make([]string, 0, len(path)-start+1)
				for _, k := range path[start:] {
					names = append(names, procs[k].Name)
				}
				names = append(names, procs[j].Name)
				fail(&procs[i], dep, "name", "a cycle: %s (each waits for the next)", strings.Join(names, " -> "))
			}
		}
		path = path[:len(path)-1]
		mark[i] = done
	}
	for i := range procs {
		if mark[i] == unseen {
			walk(i)
		}
	}
	return errs
}

// Levels returns the start order: the names of the processes that start
// together, level by level. A process is one level after the deepest of
// the processes it depends on; those without edges are at level 0. procs
// must be free of cycles (as Parse returns them).
func Levels(procs []Process) [][]string {
	index := make(map[string]int, len(procs))
	for i, p := range procs {
		index[p.Name] = i
	}
	level := make([]int, len(procs))
	for i := range level {
		level[i] = -1
	}
	var depth func(i int) int
	depth = func(i int) int {
		if level[i] >= 0 {
			return level[i]
		}
		level[i] = 0 // a cycle (not in a parsed config) ends here
		l := 0
		for _, dep := range procs[i].DependsOn {
			if j, ok := index[dep.Name]; ok {
				l = max(l, depth(j)+1)
			}
		}
		level[i] = l
		return l
	}
	var out [][]string
	for i := range procs {
		l := depth(i)
		for len(out) <= l {
			out = append(out, nil)
		}
		out[l] = append(out[l], procs[i].Name)
	}
	return out
}

// Logger is where Skip reports what it did.
type Logger interface {
	Info(msg string, kv ...any)
	Warn(msg string, kv ...any)
}

// Skip removes the processes named in names (-skip-commands) and the
// dependsOn edges to them, each with a warning: the dependent then starts
// without waiting for what is not there. A name the config lacks is a
// warning too: one config and one skip list serve many deployments.
func Skip(procs []Process, names []string, log Logger) []Process {
	skipped := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" || skipped[n] {
			continue
		}
		if !slices.ContainsFunc(procs, func(p Process) bool { return p.Name == n }) {
			log.Warn("-skip-commands names a process the config lacks", "process", n)
			continue
		}
		log.Info("skipping process", "process", n)
		skipped[n] = true
	}
	if len(skipped) == 0 {
		return procs
	}
	kept := make([]Process, 0, len(procs))
	for _, p := range procs {
		if skipped[p.Name] {
			continue
		}
		if slices.ContainsFunc(p.DependsOn, func(d Dependency) bool { return skipped[d.Name] }) {
			var deps []Dependency
			for _, d := range p.DependsOn {
				if skipped[d.Name] {
					log.Warn("dropping a dependsOn edge to a skipped process: the process starts without waiting for it",
						"process", p.Name, "edge", fmt.Sprintf("dependsOn[%d]", d.Index), "waits_for", d.String())
					continue
				}
				deps = append(deps, d)
			}
			p.DependsOn = deps
		}
		kept = append(kept, p)
	}
	return kept
}
