// Command bench measures the whole wrapper process side by side with its
// peers on the same work, in one run, and prints the table of the README:
// log relay throughput, idle memory and CPU, start-to-exit time, SIGTERM-to-
// exit time, zombies as PID 1 and binary size. `make bench` runs it.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var (
	binDir  = flag.String("bin", "bin", "directory of the built binaries (process-wrapper, testchild)")
	runs    = flag.Int("runs", 5, "repetitions of each throughput measurement (the median is shown)")
	lines   = flag.Int("lines", 1000000, "lines per throughput run")
	idleFor = flag.Duration("idle", 10*time.Second, "how long idle CPU is measured")
	steady  = flag.Duration("steady", 3*time.Minute, "how long the RSS of 100 probed processes is followed")
	only    = flag.String("only", "", "comma-separated sections to run (relay, idle, start, term, pid1, load, thousand, relaycpu, lone); empty: all")
)

// asInstalled copies the binary at path into the bench's directory with
// write(2), as an image layer or -install puts it on a node, and returns the
// copy's path. The Go linker writes its output through a shared mapping,
// and the kernel then holds the file in small folios: the same wrapper
// starts 0.8-1 ms slower from the linker's file than from a copy (as many
// page faults, each mapping pages of more folios).
func asInstalled(path, name string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	dst := filepath.Join(tmp, name)
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		fail(err)
	}
	return dst
}

// pagedOut writes the binary at path back to the disk and runs it for a
// second and a half, so that its page-out (a second after its processes
// started) gives the binary's pages back, as on a node where the wrapper
// has run before. They come back through the next starts' page faults, in
// small folios. It returns path, or "" when the wrapper could not page out
// (a kernel before 5.4).
func pagedOut(path string) string {
	f, err := os.Open(path)
	if err != nil {
		fail(err)
	}
	if err := f.Sync(); err != nil { // a page not yet written back is not given back
		fail(err)
	}
	f.Close()
	cfg := writeConfig("sleep.yaml", "- {name: s, entrypoint: sleep, args: [\"1.5\"], restartPolicy: Never}\n")
	cmd := exec.Command(path, "-debug", "-config", cfg, "-http-address", "127.0.0.1:0", "-readiness-file", filepath.Join(tmp, "paged-out-started"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		fail(fmt.Errorf("%s: %v: %s", path, err, out))
	}
	if !bytes.Contains(out, []byte("gave back the binary")) {
		fmt.Printf("note: the wrapper did not page out its binary here; the later start's row is skipped\n")
		return ""
	}
	return path
}

func section(name, title string) bool {
	if *only != "" && !slices.Contains(strings.Split(*only, ","), name) {
		return false
	}
	fmt.Println()
	fmt.Println("## " + title)
	return true
}

// tmp holds the binaries' copies and the configs; data the writers' input
// and the captured output (a gigabyte in all), in memory where /dev/shm
// is: on disk, their writeback 30 s after the relay sections wrote them
// fell on the sections that came next
var wrapper, child, tmp, data string

// wrapperBin is the wrapper as make build wrote it; wrapper is its copy
var wrapperBin string

func main() {
	flag.Parse()
	var err error
	if wrapper, err = filepath.Abs(filepath.Join(*binDir, "process-wrapper")); err != nil {
		fail(err)
	}
	child, _ = filepath.Abs(filepath.Join(*binDir, "testchild"))
	if tmp, err = os.MkdirTemp("", "pw-bench-"); err != nil {
		fail(err)
	}
	defer os.RemoveAll(tmp)
	if data, err = os.MkdirTemp("/dev/shm", "pw-bench-"); err != nil {
		data = tmp
	}
	defer os.RemoveAll(data)
	wrapperBin = wrapper
	wrapper = asInstalled(wrapperBin, "process-wrapper")
	peers := map[string]bool{}
	for _, p := range []string{"tini", "dumb-init", "supervisord"} {
		_, err := exec.LookPath(p)
		peers[p] = err == nil
		if err != nil {
			fmt.Printf("note: %s is not installed; its rows are skipped\n", p)
		}
	}

	if section("relay", fmt.Sprint("Log relay: lines/s through one reader of stdout (median of ", *runs, " runs)")) {
		relayTable(false, peers)
	}
	if section("relay", "Log relay: 4 children at once, stdout and stderr") {
		relayTable(true, peers)
	}
	if section("relaycpu", "Log relay: the wrapper's CPU and wall time against cat moving the same output bytes") {
		relayCPUTable()
	}
	if section("lone", "Lone lines beside a heavy writer") {
		loneTable()
	}
	if section("idle", "Idle: 3 sleeping children, no probes") {
		idleTable(peers)
	}
	if section("start", "Start, run one `true`, exit (median of 100, the rows taking turns)") {
		startTable(peers)
	}
	if section("term", "SIGTERM to exit, child exits at once on SIGTERM (median of 20)") {
		termTable(peers)
	}
	if section("pid1", "PID 1 and size") {
		pid1AndSize()
	}
	if section("thousand", "100 to 1000 sleeping processes") {
		thousandTable()
	}
	if section("load", "100 processes with 1 s http probes") {
		loadTable()
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.RemoveAll(tmp)
	os.RemoveAll(data)
	os.Exit(1)
}

func writeConfig(name, yaml string) string {
	p := filepath.Join(tmp, name)
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(yaml, "CHILD", child)), 0o644); err != nil {
		fail(err)
	}
	return p
}

// timeLines runs argv with stdout and stderr into one pipe read by this
// process, and returns how long until the command exited and its output
// ended, checking that want lines came out.
func timeLines(argv []string, want int) time.Duration {
	cmd := exec.Command(argv[0], argv[1:]...)
	r, w, err := os.Pipe()
	if err != nil {
		fail(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	began := time.Now()
	if err := cmd.Start(); err != nil {
		fail(err)
	}
	w.Close()
	n := 0
	buf := make([]byte, 256<<10)
	for {
		k, err := r.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if err != nil {
			break
		}
	}
	cmd.Wait()
	took := time.Since(began)
	r.Close()
	if n < want {
		fail(fmt.Errorf("%q: %d lines out, want %d", argv, n, want))
	}
	return took
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

func measure(argv []string, want int) time.Duration {
	var ds []time.Duration
	for i := 0; i < *runs; i++ {
		ds = append(ds, timeLines(argv, want))
	}
	return median(ds)
}

func relayTable(multi bool, peers map[string]bool) {
	// the writer is cat of a page-cached file: faster than any relay, so
	// that the figures are the relay's and not the writer's
	n := *lines
	in := writeLines("relay-in.txt", n)
	childCmd := "cat " + in
	cfg := writeConfig("relay1.yaml", fmt.Sprintf("- {name: loud, entrypoint: cat, args: [%q], restartPolicy: Never}\n", in))
	if multi {
		per := n / 8 // 4 children x 2 streams
		half := writeLines("relay-in8.txt", per)
		both := fmt.Sprintf("cat %s & cat %s >&2; wait", half, half)
		childCmd = fmt.Sprintf("for i in 1 2 3 4; do (%s) & done; wait", both)
		var b strings.Builder
		for i := 0; i < 4; i++ {
			fmt.Fprintf(&b, "- {name: loud%d, entrypoint: sh, args: [-c, %q], restartPolicy: Never}\n", i, both)
		}
		cfg = writeConfig("relay4.yaml", b.String())
		n = per * 8
	}
	type row struct {
		name string
		argv []string
		note string
	}
	rows := []row{
		{"child writing directly", []string{"sh", "-c", childCmd}, "no labels"},
		{"child | cat (baseline)", []string{"sh", "-c", "(" + childCmd + ") 2>&1 | cat"}, "no labels"},
		{"process-wrapper", []string{wrapper, "-config", cfg}, "logfmt, labelled per SPEC.md"},
		{"process-wrapper LOG_FORMAT=free", []string{"env", "LOG_FORMAT=free", wrapper, "-config", cfg}, "whole lines, no labels"},
	}
	if peers["tini"] {
		rows = append(rows, row{"tini", []string{"tini", "-s", "--", "sh", "-c", childCmd}, "passes the fds through"})
	}
	if peers["dumb-init"] {
		rows = append(rows, row{"dumb-init", []string{"dumb-init", "sh", "-c", childCmd}, "passes the fds through"})
	}
	if peers["supervisord"] && !multi {
		os.WriteFile(filepath.Join(tmp, "supervisord.conf"), []byte(fmt.Sprintf(`[supervisord]
nodaemon=true
logfile=/dev/null
pidfile=%s/supervisord.pid
[program:loud]
command=cat %s
autorestart=false
startsecs=0
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
`, tmp, in)), 0o644)
	}
	base := measure(rows[1].argv, n)
	fmt.Println("| command | time | lines/s | vs child \\| cat | output |")
	fmt.Println("|---|---|---|---|---|")
	for _, r := range rows {
		d := base
		if r.name != "child | cat (baseline)" {
			d = measure(r.argv, n)
		}
		fmt.Printf("| %s | %v | %.2fM | %.2fx | %s |\n", r.name, d.Round(time.Millisecond), float64(n)/d.Seconds()/1e6, base.Seconds()/d.Seconds(), r.note)
	}
	if peers["supervisord"] && !multi {
		d := timeSupervisord(n)
		fmt.Printf("| supervisord | %v | %.2fM | %.2fx | %s |\n", d.Round(time.Millisecond), float64(n)/d.Seconds()/1e6, base.Seconds()/d.Seconds(), "stdout_logfile=/dev/stdout, unlabelled")
	}
}

// timeSupervisord: supervisord does not exit when its programs end, so the
// clock stops when the last line arrives.
func timeSupervisord(n int) time.Duration {
	conf := filepath.Join(tmp, "supervisord.conf")
	var ds []time.Duration
	for i := 0; i < *runs; i++ {
		cmd := exec.Command("supervisord", "-c", conf)
		r, w, _ := os.Pipe()
		cmd.Stdout, cmd.Stderr = w, io.Discard
		began := time.Now()
		if err := cmd.Start(); err != nil {
			fail(err)
		}
		w.Close()
		got := 0
		buf := make([]byte, 256<<10)
		for got < n {
			k, err := r.Read(buf)
			got += bytes.Count(buf[:k], []byte{'\n'})
			if err != nil {
				break
			}
		}
		ds = append(ds, time.Since(began))
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		r.Close()
	}
	return median(ds)
}

func status(pid int) (rssKiB, anonKiB int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1, -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 {
			switch f[0] {
			case "VmRSS:":
				rssKiB, _ = strconv.Atoi(f[1])
			case "RssAnon:":
				anonKiB, _ = strconv.Atoi(f[1])
			}
		}
	}
	return
}

func cpuTicks(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.Atoi(f[11])
	k, _ := strconv.Atoi(f[12])
	return u + k
}

// waitChildren waits until pid has n children, so that start-up is over.
// (/proc/PID/task/TID/children lists only the children one thread forked.)
func waitChildren(pid, n int) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		count := 0
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if err != nil {
				continue
			}
			s := string(b)
			f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
			if len(f) > 1 && f[1] == strconv.Itoa(pid) {
				count++
			}
		}
		if count >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	fail(fmt.Errorf("pid %d never had %d children", pid, n))
}

func idleTable(peers map[string]bool) {
	cfg := writeConfig("idle.yaml", "- {name: a, entrypoint: CHILD, args: [sleep]}\n- {name: b, entrypoint: CHILD, args: [sleep]}\n- {name: c, entrypoint: CHILD, args: [sleep]}\n")
	type row struct {
		name     string
		argv     []string
		children int
	}
	idleAddr := freeAddr()
	rows := []row{{"process-wrapper (3 children)", []string{wrapper, "-config", cfg, "-http-address", idleAddr, "-readiness-file", filepath.Join(tmp, "idle-started")}, 3}}
	if peers["supervisord"] {
		conf := filepath.Join(tmp, "idle-supervisord.conf")
		var b strings.Builder
		fmt.Fprintf(&b, "[supervisord]\nnodaemon=true\nlogfile=/dev/null\npidfile=%s/idle.pid\n", tmp)
		for _, n := range []string{"a", "b", "c"} {
			fmt.Fprintf(&b, "[program:%s]\ncommand=%s sleep\n", n, child)
		}
		os.WriteFile(conf, []byte(b.String()), 0o644)
		rows = append(rows, row{"supervisord (3 children)", []string{"supervisord", "-c", conf}, 3})
	}
	if peers["tini"] {
		rows = append(rows, row{"tini (1 child)", []string{"tini", "-s", "--", child, "sleep"}, 1})
	}
	if peers["dumb-init"] {
		rows = append(rows, row{"dumb-init (1 child)", []string{"dumb-init", child, "sleep"}, 1})
	}
	fmt.Printf("| command | RSS | anonymous | CPU ticks over %v |\n|---|---|---|---|\n", *idleFor)
	for _, r := range rows {
		cmd := exec.Command(r.argv[0], r.argv[1:]...)
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			fail(err)
		}
		waitChildren(cmd.Process.Pid, r.children)
		before := cpuTicks(cmd.Process.Pid)
		time.Sleep(*idleFor) // the idle period being measured
		ticks := cpuTicks(cmd.Process.Pid) - before
		rss, anon := status(cmd.Process.Pid)
		budget := ""
		if r.name == rows[0].name {
			budget = fmt.Sprintf(" (budget <= 10 MiB, anonymous <= 4 MiB: %s)", met(rss <= 10<<10 && anon <= 4<<10))
		}
		fmt.Printf("| %s | %.1f MiB%s | %.1f MiB | %d |\n", r.name, float64(rss)/1024, budget, float64(anon)/1024, ticks)
		if r.name == rows[0].name {
			// as in a pod: kubelet asks /readiness and Prometheus scrapes
			for _, path := range []string{"/readiness", "/liveness", "/metrics", "/prommerge", "/metrics"} {
				if resp, err := http.Get("http://" + idleAddr + path); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			rss, anon = status(cmd.Process.Pid)
			fmt.Printf("| %s, after /readiness, /metrics, /prommerge | %.1f MiB | %.1f MiB | |\n", r.name, float64(rss)/1024, float64(anon)/1024)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
}

func startTable(peers map[string]bool) {
	cfg := writeConfig("true.yaml", "- {name: t, entrypoint: /bin/true, restartPolicy: Never}\n")
	// the first start on a node: a copy just written, as after an image
	// pull; and a later one, from a copy an earlier run paged out
	first := asInstalled(wrapperBin, "process-wrapper-first")
	later := pagedOut(asInstalled(wrapperBin, "process-wrapper-later"))
	rows := [][]string{{"/bin/true"}, {first, "-config", cfg}, {first, "-config", cfg, "-readiness-file=", "-control-socket="}}
	names := []string{"true alone", "process-wrapper", "process-wrapper -readiness-file= -control-socket= (no file written, no control socket)"}
	if later != "" {
		rows, names = append(rows, []string{later, "-config", cfg}), append(names, "process-wrapper, a later start: an earlier run's page-out gave its binary's pages back")
	}
	// the wrapper's start before its own code: the runtime and the
	// initialisers of what it imports (make bench builds it as the wrapper)
	floor, floorRow := filepath.Join(*binDir, "floor"), -1
	if _, err := os.Stat(floor); err == nil {
		floorRow = len(rows)
		rows, names = append(rows, []string{asInstalled(floor, "floor")}), append(names, "floor: the wrapper's imports, and exit")
	}
	if peers["tini"] {
		rows, names = append(rows, []string{"tini", "-s", "--", "/bin/true"}), append(names, "tini")
	}
	if peers["dumb-init"] {
		rows, names = append(rows, []string{"dumb-init", "/bin/true"}), append(names, "dumb-init")
	}
	fmt.Println("| command | median | vs tini |\n|---|---|---|")
	var tini time.Duration
	// the rows take turns, so that a machine slowing down meanwhile slows
	// each of them alike
	ds := make([][]time.Duration, len(rows))
	for j := 0; j < 100; j++ {
		for i, argv := range rows {
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
			began := time.Now()
			if err := cmd.Run(); err != nil {
				fail(fmt.Errorf("%q: %v", argv, err))
			}
			ds[i] = append(ds[i], time.Since(began))
		}
	}
	results := make([]time.Duration, len(rows))
	for i := range rows {
		results[i] = median(ds[i])
		if names[i] == "tini" {
			tini = results[i]
		}
	}
	for i := range rows {
		ratio := "-"
		if tini > 0 {
			ratio = fmt.Sprintf("%.2fx", results[i].Seconds()/tini.Seconds())
			if names[i] == "process-wrapper" {
				r := results[i].Seconds() / tini.Seconds()
				ratio += fmt.Sprintf(" (goal <= 3x: %s; <= 4x with the initialisers' breakdown: %s)", met(r <= 3), met(r <= 4))
			}
		}
		fmt.Printf("| %s | %.2f ms | %s |\n", names[i], float64(results[i].Microseconds())/1000, ratio)
	}
	if i := floorRow; i >= 0 {
		fmt.Printf("\nThe wrapper's own work (config, parts, the start of `true`, its end, the exit): %.2f ms of its %.2f ms; its readiness file and control socket (made, served, removed): %.2f ms of it.\n",
			float64((results[1]-results[i]).Microseconds())/1000, float64(results[1].Microseconds())/1000,
			float64((results[1]-results[2]).Microseconds())/1000)
	}
}

func termTable(peers map[string]bool) {
	cfg := writeConfig("term.yaml", "- {name: t, entrypoint: CHILD, args: [trap, \"0\"]}\n")
	rows := [][]string{{wrapper, "-config", cfg}}
	names := []string{"process-wrapper"}
	if peers["tini"] {
		rows, names = append(rows, []string{"tini", "-s", "--", child, "trap", "0"}), append(names, "tini")
	}
	if peers["dumb-init"] {
		rows, names = append(rows, []string{"dumb-init", child, "trap", "0"}), append(names, "dumb-init")
	}
	fmt.Println("| command | SIGTERM to exit |\n|---|---|")
	for i, argv := range rows {
		var ds []time.Duration
		for j := 0; j < 20; j++ {
			cmd := exec.Command(argv[0], argv[1:]...)
			r, w, _ := os.Pipe()
			cmd.Stdout, cmd.Stderr = w, io.Discard
			if err := cmd.Start(); err != nil {
				fail(err)
			}
			w.Close()
			// the child is ready once it says it traps signals
			buf := make([]byte, 4096)
			var seen []byte
			for !bytes.Contains(seen, []byte("trapping signals")) {
				k, err := r.Read(buf)
				seen = append(seen, buf[:k]...)
				if err != nil {
					fail(fmt.Errorf("%q ended before its child was ready", argv))
				}
			}
			go io.Copy(io.Discard, r)
			began := time.Now()
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			ds = append(ds, time.Since(began))
			r.Close()
		}
		fmt.Printf("| %s | %.2f ms |\n", names[i], float64(median(ds).Microseconds())/1000)
	}
}

func pid1AndSize() {
	fi, err := os.Stat(wrapper)
	if err != nil {
		fail(err)
	}
	fmt.Printf("| figure | value | goal |\n|---|---|---|\n")
	fmt.Printf("| static stripped binary | %.1f MiB | <= 14 MiB: %s |\n", float64(fi.Size())/(1<<20), met(fi.Size() <= 14<<20))
	if os.Getuid() != 0 {
		fmt.Println("| zombies as PID 1 | (needs root for unshare) | 0 |")
		return
	}
	done := filepath.Join(tmp, "orphans-done")
	cfg := writeConfig("reap.yaml", fmt.Sprintf(`
- {name: orphaner, entrypoint: CHILD, args: [orphans, "1000", "0", %[1]q], restartPolicy: Never}
- {name: checker, entrypoint: CHILD, args: [reaped, %[1]q], restartPolicy: Never}
`, done))
	out, err := exec.Command("unshare", "--pid", "--fork", "--mount-proc", wrapper, "-config", cfg).Output()
	zombies := "?"
	for _, l := range strings.Split(string(out), "\n") {
		if i := strings.Index(l, "zombies="); i >= 0 && strings.Contains(l, "app=checker") {
			zombies = strings.Trim(strings.Fields(l[i+len("zombies="):])[0], `"`)
		}
	}
	fmt.Printf("| zombies left as PID 1 after 1,000 orphans | %s (exit err %v) | 0 |\n", zombies, err)
}

// loadTable runs 100 processes whose readiness probes ask an HTTP endpoint
// every second, measures the wrapper's CPU share, and compares /readiness
// requests/s under wrk with a bare net/http handler behind the same wrk.
func loadTable() {
	if _, err := exec.LookPath("wrk"); err != nil {
		fmt.Println("(wrk is not installed: skipped)")
		return
	}
	target := freeAddr()
	srv := exec.Command(child, "bare", target)
	if err := srv.Start(); err != nil {
		fail(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	var b strings.Builder
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&b, "- {name: p%d, entrypoint: CHILD, args: [sleep], readiness: {http: {url: 'http://%s/'}, periodSeconds: 1}}\n", i, target)
	}
	cfg := writeConfig("load.yaml", b.String())
	addr := freeAddr()
	w := exec.Command(wrapper, "-config", cfg, "-http-address", addr, "-readiness-file", filepath.Join(tmp, "load-started"))
	w.Stdout, w.Stderr = io.Discard, io.Discard
	if err := w.Start(); err != nil {
		fail(err)
	}
	defer func() { w.Process.Signal(syscall.SIGTERM); w.Wait() }()
	// ready once every probe passed
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/readiness"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			fail(errors.New("the 100 processes never became ready"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	ready := time.Now()
	before := cpuTicks(w.Process.Pid)
	time.Sleep(*idleFor) // the period being measured
	ticks := cpuTicks(w.Process.Pid) - before
	share := float64(ticks) / 100 / idleFor.Seconds() * 100 // clock ticks are 1/100 s
	fmt.Printf("| figure | value | goal | |\n|---|---|---|---|\n")
	fmt.Printf("| wrapper CPU, 100 processes x 1 http probe/s | %.2f %% of a core (%d ticks in %v) | < 2 %% | %s |\n", share, ticks, *idleFor, met(share < 2))
	// the RSS as the probes go on: it must level off, not grow
	var curve []string
	rss := 0
	for _, at := range []time.Duration{10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, *steady} {
		if at > *steady {
			continue
		}
		time.Sleep(time.Until(ready.Add(at))) // the RSS is sampled at these ages
		rss, _ = status(w.Process.Pid)
		curve = append(curve, fmt.Sprintf("%v: %.1f", at, float64(rss)/1024))
	}
	fmt.Printf("| wrapper RSS with them, MiB at each age since all were ready | %s | <= 16 MiB at %v | %s |\n", strings.Join(curve, ", "), *steady, met(float64(rss)/1024 <= 16))

	bare := freeAddr()
	bs := exec.Command(child, "bare", bare)
	if err := bs.Start(); err != nil {
		fail(err)
	}
	defer func() { bs.Process.Kill(); bs.Wait() }()
	waitListening(bare)
	rps := func(url string) float64 {
		out, err := exec.Command("wrk", "-t2", "-c32", "-d5s", url).CombinedOutput()
		if err != nil {
			fail(fmt.Errorf("wrk: %v %s", err, out))
		}
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "Requests/sec:" {
				v, _ := strconv.ParseFloat(f[1], 64)
				return v
			}
		}
		fail(fmt.Errorf("no Requests/sec in %s", out))
		return 0
	}
	base := rps("http://" + bare + "/")
	rate := rps("http://" + addr + "/readiness")
	fmt.Printf("| /readiness under wrk -t2 -c32, probes running | %.0f req/s: %.2fx the bare handler's %.0f | >= 0.8x | %s |\n", rate, rate/base, base, met(rate/base >= 0.8))
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitListening(addr string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	fail(fmt.Errorf("nothing listens on %s", addr))
}
