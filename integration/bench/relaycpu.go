package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/wrapper/relay"
)

// stage is one command of a pipeline.
type stage struct {
	argv []string
	env  []string // added to the environment
	in   string   // file on stdin for the first stage; "" for /dev/null
	pipe int      // the capacity of the pipe to the next stage; 0: Linux's default
}

// The baselines' pipes have the capacity the wrapper gives its own (its
// stdout's, and a busy child's), so that they move the bytes through the
// same pipes.
var (
	outPipe   = logline.OutputPipeSize
	childPipe = relay.ChildPipeSize
)

// runPipeline runs the stages with each one's stdout into the next one's
// stdin (the last one's to /dev/null) and returns the wall time until every
// stage exited, and each stage's CPU: its own and its reaped children's.
func runPipeline(stages []stage) (time.Duration, []time.Duration) {
	cmds := make([]*exec.Cmd, len(stages))
	var closers []io.Closer
	var prev *os.File
	for i, s := range stages {
		c := exec.Command(s.argv[0], s.argv[1:]...)
		c.Env = append(os.Environ(), s.env...)
		c.Stderr = os.Stderr
		if i == 0 && s.in != "" {
			f, err := os.Open(s.in)
			if err != nil {
				fail(err)
			}
			closers = append(closers, f)
			c.Stdin = f
		} else if prev != nil {
			c.Stdin = prev
		}
		if i < len(stages)-1 {
			r, w, err := os.Pipe()
			if err != nil {
				fail(err)
			}
			if s.pipe > 0 {
				if err := logline.GrowPipe(int(w.Fd()), s.pipe); err != nil {
					fail(err)
				}
			}
			c.Stdout = w
			closers = append(closers, w, r)
			prev = r
		}
		cmds[i] = c
	}
	began := time.Now()
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			fail(err)
		}
	}
	for _, c := range closers {
		c.Close()
	}
	cpus := make([]time.Duration, len(cmds))
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			fail(fmt.Errorf("%q: %v", stages[i].argv, err))
		}
		cpus[i] = c.ProcessState.UserTime() + c.ProcessState.SystemTime()
	}
	return time.Since(began), cpus
}

// writeLines writes n lines of 98 bytes each over files files (the
// writers' input: cat moves them at the speed of a pipe).
func writeLines(name string, n int) string {
	p := filepath.Join(data, name)
	f, err := os.Create(p)
	if err != nil {
		fail(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	filler := strings.Repeat("abcdefghij", 10)
	for i := 0; i < n; i++ {
		fmt.Fprintf(w, "line %08d %s\n", i, filler[:83]) // 98 bytes with the newline
	}
	if err := w.Flush(); err != nil {
		fail(err)
	}
	f.Close()
	return p
}

// capture runs argv with stdout to a file, for the baselines that move the
// wrapper's exact output.
func capture(argv []string, env []string, out string) []byte {
	c := exec.Command(argv[0], argv[1:]...)
	c.Env = append(os.Environ(), env...)
	f, err := os.Create(out)
	if err != nil {
		fail(err)
	}
	c.Stdout = f
	if err := c.Run(); err != nil {
		fail(fmt.Errorf("%q: %v", argv, err))
	}
	f.Close()
	b, err := os.ReadFile(out)
	if err != nil {
		fail(err)
	}
	return b
}

func relayCPUTable() {
	// the figures of one run swing by a third on this VM: longer runs and
	// more rounds than the other sections
	n := 3 * *lines
	rounds := 2**runs + 1
	in := writeLines("in.txt", n)
	cfg1 := writeConfig("cat1.yaml", fmt.Sprintf("- {name: loud, entrypoint: cat, args: [%q], restartPolicy: Never}\n", in))
	// the same processes with nothing to write: what the wrapper and its
	// writers cost whatever they relay (start, exit), taken off the figures
	// per line as the middle cat's own is
	empty1 := writeConfig("empty1.yaml", "- {name: loud, entrypoint: cat, args: [/dev/null], restartPolicy: Never}\n")
	var b, e strings.Builder
	var ins []string
	for i := 0; i < 4; i++ {
		ins = append(ins, writeLines(fmt.Sprintf("in%d.txt", i), n/4))
		fmt.Fprintf(&b, "- {name: loud%d, entrypoint: cat, args: [%q], restartPolicy: Never}\n", i, ins[i])
		fmt.Fprintf(&e, "- {name: loud%d, entrypoint: cat, args: [/dev/null], restartPolicy: Never}\n", i)
	}
	cfg4 := writeConfig("cat4.yaml", b.String())
	empty4 := writeConfig("empty4.yaml", e.String())

	fmt.Printf("%d lines of 98 B; each writer is `cat` of a page-cached file. The wrapper grows its stdout pipe to %d KiB and a busy child's to %d KiB (Linux's default is 64 KiB): the baselines' pipes are grown alike. CPU is user+system of the process and its children, less what the same commands take with nothing to move (their start and exit: about 10 ms for the wrapper, 0.5 ms for a cat). The runs of the wrapper and of its baselines alternate; medians of %d rounds, the ratios the medians of each round's.\n\n", n, outPipe>>10, childPipe>>10, rounds)
	fmt.Println("| figure | wrapper | baseline in the same run, same pipes | ratio | goal | | the baseline with Linux's default pipes: ratio |")
	fmt.Println("|---|---|---|---|---|---|---|")
	cat := []string{"cat"}
	free := []string{"LOG_FORMAT=free"}
	// the pipes of a baseline's two stages: [0] grown as the wrapper's are,
	// [1] left at Linux's default
	pipes := [2][2]int{{childPipe, outPipe}, {0, 0}}
	for _, v := range []struct {
		name, cfg, empty string
		ins              []string
		want             int
	}{{"1 writer", cfg1, empty1, []string{in}, n}, {"4 writers", cfg4, empty4, ins, n}} {
		out := filepath.Join(data, "out.txt")
		got := capture([]string{wrapper, "-config", v.cfg}, nil, out)
		checkLines(got, v.want)
		var own, wall []time.Duration
		var mid, cwall, cpuRatio, wallRatio [2][]time.Duration // [0]: same pipes, [1]: default ones
		for i := 0; i < rounds; i++ {
			w, cpu := runPipeline([]stage{{argv: []string{wrapper, "-config", v.cfg}}, {argv: cat}})
			_, fixed := runPipeline([]stage{{argv: []string{wrapper, "-config", v.empty}}, {argv: cat}})
			_, wfixed := runPipeline([]stage{{argv: []string{"cat", "/dev/null"}}, {argv: cat}})
			_, mfixed := runPipeline([]stage{{argv: cat}, {argv: cat}, {argv: cat}})
			for j, p := range pipes {
				_, wcpu := runPipeline([]stage{{argv: append([]string{"cat"}, v.ins...), pipe: p[0]}, {argv: cat}})
				_, m := runPipeline([]stage{{argv: cat, in: out, pipe: p[0]}, {argv: cat, pipe: p[1]}, {argv: cat}})
				cw, _ := runPipeline([]stage{{argv: cat, in: out, pipe: p[1]}, {argv: cat}})
				// per line: the wrapper's CPU less its writers' and less
				// what the same run costs with nothing to relay; the middle
				// cat's less its own with nothing to move
				o := cpu[0] - fixed[0] - (wcpu[0] - wfixed[0])
				mc := m[1] - mfixed[1]
				if j == 0 {
					own, wall = append(own, o), append(wall, w)
				}
				mid[j], cwall[j] = append(mid[j], mc), append(cwall[j], cw)
				// ratios kept as durations of a thousandth: median() sorts them
				cpuRatio[j] = append(cpuRatio[j], time.Duration(1000*o.Seconds()/mc.Seconds()))
				wallRatio[j] = append(wallRatio[j], time.Duration(1000*w.Seconds()/cw.Seconds()))
			}
		}
		ratio := func(d []time.Duration) float64 { return float64(median(d)) / 1000 }
		r := ratio(cpuRatio[0])
		fmt.Printf("| %s: wrapper CPU less the writer's and less its start and exit | %v | middle `cat` of `cat out.txt \\| cat \\| cat`: %v | %.2fx | <= 1.5x | %s | %v: %.2fx |\n",
			v.name, median(own).Round(time.Millisecond), median(mid[0]).Round(time.Millisecond), r, met(r <= 1.5), median(mid[1]).Round(time.Millisecond), ratio(cpuRatio[1]))
		r = ratio(wallRatio[0])
		fmt.Printf("| %s: wall time of `writer \\| wrapper \\| cat` (%d MB out) | %v | `cat out.txt \\| cat`: %v | %.2fx | <= 1.3x | %s | %v: %.2fx |\n",
			v.name, len(got)/1e6, median(wall).Round(time.Millisecond), median(cwall[0]).Round(time.Millisecond), r, met(r <= 1.3), median(cwall[1]).Round(time.Millisecond), ratio(wallRatio[1]))
		if v.name != "1 writer" {
			continue
		}
		var fwall []time.Duration
		var fbase, fratio [2][]time.Duration
		for i := 0; i < rounds; i++ {
			w, _ := runPipeline([]stage{{argv: []string{wrapper, "-config", cfg1}, env: free}, {argv: cat}})
			fwall = append(fwall, w)
			for j, p := range pipes {
				b, _ := runPipeline([]stage{{argv: cat, in: in, pipe: p[0]}, {argv: cat, pipe: p[1]}, {argv: cat}})
				fbase[j] = append(fbase[j], b)
				fratio[j] = append(fratio[j], time.Duration(1000*w.Seconds()/b.Seconds()))
			}
		}
		r = ratio(fratio[0])
		fmt.Printf("| LOG_FORMAT=free, 1 writer: wall time | %v | `writer \\| cat \\| cat`: %v | %.2fx | <= 1.1x | %s | %v: %.2fx |\n",
			median(fwall).Round(time.Millisecond), median(fbase[0]).Round(time.Millisecond), r, met(r <= 1.1), median(fbase[1]).Round(time.Millisecond), ratio(fratio[1]))
	}
}

// checkLines fails unless out holds want relayed lines, each whole: a
// timestamp, the app, the message as written and the line's end.
func checkLines(out []byte, want int) {
	got := 0
	for len(out) > 0 {
		i := bytes.IndexByte(out, '\n')
		if i < 0 {
			fail(fmt.Errorf("the output ends in a broken line %q", out))
		}
		l := out[:i]
		out = out[i+1:]
		if !bytes.Contains(l, []byte(" app=loud")) {
			continue // the wrapper's own
		}
		j := bytes.Index(l, []byte(` msg="line `))
		if !bytes.HasPrefix(l, []byte("ts=")) || j < 0 || len(l)-j != len(` msg="`)+97+1 || l[len(l)-1] != '"' {
			fail(fmt.Errorf("broken line %q", l))
		}
		got++
	}
	if got != want {
		fail(fmt.Errorf("%d lines relayed, want %d", got, want))
	}
}
