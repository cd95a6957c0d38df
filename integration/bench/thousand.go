package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// wrapperRun is one wrapper with n sleeping children, up and idle.
type wrapperRun struct {
	n       int
	startup time.Duration // exec until the readiness file: every process runs
	rssKiB  int
	anonKiB int
	rt      map[string]float64 // from its /metrics
	series  int                // lines of its /metrics that are samples
	term    time.Duration      // SIGTERM until it exited
}

// sleepers starts the wrapper on n children (coreutils' sleep: a child
// lighter than the wrapper's work for it), waits for its readiness file,
// lets the start-up pages go (the page-out runs a second after every
// process runs) and measures, then stops it with SIGTERM.
func sleepers(n int, measure bool) wrapperRun {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "- {name: s%d, entrypoint: sleep, args: [infinity]}\n", i)
	}
	cfg := writeConfig(fmt.Sprintf("sleepers%d.yaml", n), b.String())
	ready := filepath.Join(tmp, fmt.Sprintf("sleepers%d-ready", n))
	os.Remove(ready)
	addr := freeAddr()
	cmd := exec.Command(wrapper, "-config", cfg, "-http-address", addr, "-readiness-file", ready)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	began := time.Now()
	if err := cmd.Start(); err != nil {
		fail(err)
	}
	run := wrapperRun{n: n}
	for {
		if _, err := os.Stat(ready); err == nil {
			run.startup = time.Since(began)
			break
		}
		if time.Since(began) > 60*time.Second {
			fail(fmt.Errorf("%d processes: no readiness file after 60 s", n))
		}
		time.Sleep(200 * time.Microsecond) // polling a file: the resolution of the start-up figure
	}
	if measure {
		time.Sleep(3 * time.Second) // the page-out gives back the start-up pages a second after
		run.rssKiB, run.anonKiB = status(cmd.Process.Pid)
		run.rt, run.series = scrape(addr)
	}
	t := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	run.term = time.Since(t)
	return run
}

// scrape reads the wrapper's Go runtime figures and counts its series.
func scrape(addr string) (map[string]float64, int) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		fail(err)
	}
	defer resp.Body.Close()
	rt := map[string]float64{}
	series := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		series++
		if f := strings.Fields(l); len(f) == 2 && strings.HasPrefix(f[0], "go_") {
			v, _ := strconv.ParseFloat(f[1], 64)
			rt[f[0]] = v
		}
	}
	return rt, series
}

func thousandTable() {
	const reps = 3
	best := map[int]wrapperRun{}
	for _, n := range []int{100, 400, 1000} {
		var starts []time.Duration
		var last wrapperRun
		for i := 0; i < reps; i++ {
			r := sleepers(n, i == reps-1)
			starts = append(starts, r.startup)
			last = r
		}
		last.startup = median(starts)
		best[n] = last
	}
	a, c := best[100], best[1000]
	per := func(f func(r wrapperRun) float64) float64 { return (f(c) - f(a)) / float64(c.n-a.n) }
	anon := per(func(r wrapperRun) float64 { return float64(r.anonKiB) })
	fmt.Println("| figure | value | goal | |")
	fmt.Println("|---|---|---|---|")
	for _, n := range []int{100, 400, 1000} {
		r := best[n]
		fmt.Printf("| RSS with %d sleeping children | %.1f MiB (anonymous %.1f MiB) | %s | %s |\n", n, float64(r.rssKiB)/1024, float64(r.anonKiB)/1024,
			map[bool]string{true: "<= 40 MiB", false: ""}[n == 1000], map[bool]string{true: met(float64(r.rssKiB)/1024 <= 40), false: ""}[n == 1000])
	}
	fmt.Printf("| anonymous memory per idle child, 100 -> 1000 | %.1f KiB | <= 16 KiB | %s |\n", anon, met(anon <= 16))
	fmt.Printf("| of which goroutine stacks | %.1f KiB (%.1f goroutines) | | |\n",
		per(func(r wrapperRun) float64 { return r.rt["go_memstats_stack_inuse_bytes"] })/1024, per(func(r wrapperRun) float64 { return r.rt["go_goroutines"] }))
	fmt.Printf("| of which Go heap in use (state, metric series, relays) | %.1f KiB | | |\n",
		per(func(r wrapperRun) float64 { return r.rt["go_memstats_heap_inuse_bytes"] })/1024)
	fmt.Printf("| metric series per child | %.1f | | |\n", per(func(r wrapperRun) float64 { return float64(r.series) }))
	m1 := (best[400].startup - a.startup).Seconds() / 300
	m2 := (c.startup - best[400].startup).Seconds() / 600
	fmt.Printf("| start until every process runs, 100 / 400 / 1000 (median of %d) | %v / %v / %v | | |\n", reps,
		a.startup.Round(time.Millisecond), best[400].startup.Round(time.Millisecond), c.startup.Round(time.Millisecond))
	fmt.Printf("| marginal start cost per process, 100 -> 400 and 400 -> 1000 | %.2f ms, %.2f ms: %.2fx | <= 1.3x, <= 1.5 ms | %s |\n",
		m1*1000, m2*1000, m2/m1, met(m2/m1 <= 1.3 && m2 <= 1.5e-3))
	fmt.Printf("| SIGTERM to exit, 1000 processes | %v | process-compose 154 ms (issue 15, not installable here) | |\n", c.term.Round(time.Millisecond))
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}
