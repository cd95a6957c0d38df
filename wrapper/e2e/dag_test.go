package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// dagNode is a script that checks, at its start, the marks its
// dependencies leave when they are ready or done, and at its stop signal,
// the marks of the processes that depend on it: each one must have exited.
const dagNode = `name=$1 kind=$2 delay=$3 needs=$4 dependents=$5
for f in $needs; do [ -e "$f" ] || echo "VIOLATION: $name started before $f"; done
if [ "$kind" = oneshot ]; then sleep "$delay"; touch "$DIR/$name.done"; exit 0; fi
trap 'for x in $dependents; do [ -e "$DIR/$x.stopped" ] || [ -e "$DIR/$x.done" ] || echo "VIOLATION: $name stopped before $x"; done; touch "$DIR/$name.stopped"; exit 0' TERM
sleep "$delay"; touch "$DIR/$name.ready"
sleep 1000 & wait $!
`

// TestRandomDAG starts 50 processes in a random graph of every condition
// and stops them: no process starts before its conditions hold, and none
// gets its stop signal before the processes that depend on it have exited.
// Ready and completed are checked by the marks the processes themselves
// leave; started (the main pid exists, which no mark of the process can
// show before its first line runs) by the wrapper's log.
func TestRandomDAG(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PW_DAG_SEED"); s != "" { // to run a failed graph again
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (PW_DAG_SEED=%[1]d runs this graph again)", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>7))
	dir := t.TempDir()
	script := filepath.Join(dir, "node.sh")
	if err := os.WriteFile(script, []byte(dagNode), 0o644); err != nil {
		t.Fatal(err)
	}
	const n = 50
	type node struct {
		oneshot, probe bool
		deps           map[int]string // dependency -> condition
		dependents     []int
	}
	nodes := make([]node, n)
	for i := range nodes {
		nodes[i].oneshot = rng.IntN(4) == 0
		nodes[i].probe = !nodes[i].oneshot && rng.IntN(3) == 0
		nodes[i].deps = map[int]string{}
		if i == 0 {
			continue
		}
		for k := rng.IntN(4); k > 0; k-- {
			j := rng.IntN(i)
			conds := []string{"started", "ready"}
			if nodes[j].oneshot {
				conds = append(conds, "completed", "completedSuccessfully")
			}
			if _, dup := nodes[i].deps[j]; !dup {
				nodes[i].deps[j] = conds[rng.IntN(len(conds))]
				nodes[j].dependents = append(nodes[j].dependents, i)
			}
		}
	}
	name := func(i int) string { return fmt.Sprintf("p%02d", i) }
	var cfg strings.Builder
	for i, nd := range nodes {
		kind, policy := "long", "Always"
		if nd.oneshot {
			kind, policy = "oneshot", "OnFailure"
		}
		var needs, deps, dependents []string
		for j, c := range nd.deps {
			deps = append(deps, fmt.Sprintf("{name: %s, condition: %s}", name(j), c))
			switch {
			case c == "completed" || c == "completedSuccessfully":
				needs = append(needs, filepath.Join(dir, name(j)+".done"))
			case c == "ready" && nodes[j].probe:
				needs = append(needs, filepath.Join(dir, name(j)+".ready"))
			case c == "ready" && nodes[j].oneshot:
				// ready once started: only the log can show it
			}
		}
		for _, d := range nd.dependents {
			dependents = append(dependents, name(d))
		}
		fmt.Fprintf(&cfg, "- name: %s\n  entrypoint: sh\n  args: [%s, %s, %s, '0.%d', '%s', '%s']\n  envs: {DIR: %s}\n  restartPolicy: %s\n  dependsOn: [%s]\n",
			name(i), script, name(i), kind, rng.IntN(3), strings.Join(needs, " "), strings.Join(dependents, " "), dir, policy, strings.Join(deps, ", "))
		if nd.probe {
			fmt.Fprintf(&cfg, "  readinessProbe: {file: {path: %s}, periodSeconds: 1}\n", filepath.Join(dir, name(i)+".ready"))
		}
	}
	w := start(t, config(t, cfg.String()), opts{args: []string{"-graceful-shutdown-deadline", "20s"}})
	w.waitLine(60*time.Second, "msg", "every process is ready: wrote the readiness file")
	// a process that has not set its trap yet would die of the stop
	// signal without its check: each long one leaves its ready mark after
	// its trap; the one-shots are done
	waitfor.Condition(t, 10*time.Second, "every process to set its trap or be done", func() bool {
		for i, nd := range nodes {
			mark := ".ready"
			if nd.oneshot {
				mark = ".done"
			}
			if _, err := os.Stat(filepath.Join(dir, name(i)+mark)); err != nil {
				return false
			}
		}
		return true
	})
	w.signal(syscall.SIGTERM)
	if code := w.wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
	for _, l := range w.lines() {
		if strings.HasPrefix(l["msg"], "VIOLATION") {
			t.Errorf("%s: %s", l["app"], l["msg"])
		}
	}
	// the log: each start after what it waits for, each stop signal after
	// the exits of the processes that depend on it
	lines := w.lines()
	for i, nd := range nodes {
		for j, c := range nd.deps {
			met := []string{"msg", "process started", "process", name(j)}
			switch {
			case c == "completed" || c == "completedSuccessfully":
				met = []string{"msg", "process completed", "process", name(j)}
			case c == "ready" && nodes[j].probe:
				met = []string{"msg", "readiness probe passed", "process", name(j)}
			}
			before(t, lines, met, started(name(i)))
		}
		if nd.oneshot {
			continue
		}
		for _, d := range nd.dependents {
			if nodes[d].oneshot {
				continue
			}
			before(t, lines, []string{"msg", "process exited", "process", name(d)}, []string{"msg", "sending stop signal", "process", name(i)})
		}
	}
	if t.Failed() {
		t.Logf("config:\n%s", cfg.String())
	}
}
