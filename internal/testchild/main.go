// Command testchild is the small, static helper program that the tests of
// process-wrapper supervise: each mode is one behaviour a real process shows
// (logging, crashing, trapping signals, orphaning grandchildren, holding its
// pipes open, ...). It is also the demo's workload.
package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fatal("usage: testchild MODE [ARGS...]")
	}
	args := os.Args[2:]
	if code := os.Getenv("TESTCHILD_TERM_EXIT"); code != "" {
		// the demo's processes end as a well-behaved server does: on
		// SIGTERM, with the code given
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM)
		go func() {
			<-ch
			fmt.Println("got SIGTERM: exiting")
			os.Exit(atoi(code))
		}()
	}
	switch os.Args[1] {
	case "print": // print each argument as a line
		for _, a := range args {
			fmt.Println(a)
		}
	case "stderr": // print each argument as a line on stderr
		for _, a := range args {
			fmt.Fprintln(os.Stderr, a)
		}
	case "exit": // exit CODE
		os.Exit(atoi(arg(args, 0, "0")))
	case "sleep": // sleep [DURATION]: default for ever
		sleep(arg(args, 0, ""))
	case "trap": // trap [EXITCODE]: report signals, exit EXITCODE on SIGTERM/SIGINT
		trap(atoi(arg(args, 0, "0")))
	case "ignore-term": // ignore SIGTERM and sleep
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		sleep("")
	case "lines": // lines COUNT SIZE: COUNT numbered lines of SIZE bytes
		lines(atoi(arg(args, 0, "10")), atoi(arg(args, 1, "100")), os.Stdout)
	case "lines-both": // lines-both COUNT SIZE: the same on stdout and stderr at once
		done := make(chan struct{})
		go func() { lines(atoi(arg(args, 0, "10")), atoi(arg(args, 1, "100")), os.Stderr); close(done) }()
		lines(atoi(arg(args, 0, "10")), atoi(arg(args, 1, "100")), os.Stdout)
		<-done
	case "bigline": // bigline BYTES: one line of BYTES bytes ('a'..'z' repeating)
		bigline(atoi(arg(args, 0, "1048576")))
	case "raw": // raw TEXT: write TEXT as is (Go escapes such as \n, \x00 interpreted)
		s, err := strconv.Unquote(`"` + arg(args, 0, "") + `"`)
		if err != nil {
			fatal("raw: %v", err)
		}
		os.Stdout.WriteString(s)
	case "orphans": // orphans COUNT EXITCODE [DONEFILE]: start COUNT children, create DONEFILE, exit without waiting
		orphans(atoi(arg(args, 0, "10")), atoi(arg(args, 1, "0")), arg(args, 2, ""))
	case "background": // background EXITCODE [MODE ARGS...]: leave a grandchild (testchild MODE ARGS, default sleep 60s) holding stdout, exit
		mode := []string{"sleep", "60s"}
		if len(args) > 1 {
			mode = args[1:]
		}
		background(atoi(arg(args, 0, "0")), mode)
	case "env": // env: print the environment, sorted
		env := os.Environ()
		sort.Strings(env)
		for _, e := range env {
			fmt.Println(e)
		}
	case "args": // args: print each argument on its own line
		for _, a := range args {
			fmt.Println("arg=" + a)
		}
	case "id": // id: print uid, gid, groups and working directory
		wd, _ := os.Getwd()
		groups, _ := os.Getgroups()
		fmt.Printf("uid=%d gid=%d groups=%v cwd=%s pgid=%d\n", os.Getuid(), os.Getgid(), groups, wd, pgid())
	case "sigstate": // sigstate: print the signal mask and ignored set from /proc
		sigstate()
	case "stdin": // stdin: read stdin to its end and report the byte count
		n, err := bufio.NewReader(os.Stdin).WriteTo(discard{})
		fmt.Printf("stdin bytes=%d err=%v\n", n, err)
	case "serve": // serve ADDR: answer every HTTP request with 200 "ok"
		serve(arg(args, 0, "127.0.0.1:8080"))
	case "bare": // bare ADDR: answer every HTTP request with 200 "ok", silently (a benchmark baseline)
		err := http.ListenAndServe(arg(args, 0, "127.0.0.1:8080"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("ok\n"))
		}))
		fatal("bare: %v", err)
	case "stamp": // stamp INTERVAL COUNT: print "stamp <unix ns>" every INTERVAL, each line alone in its write
		d, err := time.ParseDuration(arg(args, 0, "10ms"))
		if err != nil {
			fatal("bad interval %q", arg(args, 0, ""))
		}
		for range atoi(arg(args, 1, "100")) {
			fmt.Fprintf(os.Stdout, "stamp %d\n", time.Now().UnixNano())
			time.Sleep(d)
		}
	case "tick": // tick INTERVAL [COUNT]: print a numbered line every INTERVAL
		tick(arg(args, 0, "1s"), atoi(arg(args, 1, "0")))
	case "reaped": // reaped [DONEFILE]: once DONEFILE exists, wait until the parent has no other testchild child and no zombie child
		reaped(arg(args, 0, ""))
	case "crash-after": // crash-after DURATION CODE: log, wait, exit with CODE
		fmt.Println("started; crashing in", arg(args, 0, "1s"))
		sleep(arg(args, 0, "1s"))
		fmt.Fprintln(os.Stderr, "ERROR simulated crash")
		os.Exit(atoi(arg(args, 1, "1")))
	case "burn": // burn CPUTIME MIB [CODE]: use CPUTIME of CPU, hold MIB of touched memory; then exit CODE, or sleep without CODE
		burn(arg(args, 0, "100ms"), atoi(arg(args, 1, "0")))
		if len(args) > 2 {
			os.Exit(atoi(args[2]))
		}
		sleep("")
	case "burn-children": // burn-children N CPUTIME: run N children that each burn CPUTIME, wait for them, sleep
		for range atoi(arg(args, 0, "2")) {
			c := exec.Command(os.Args[0], "burn", arg(args, 1, "100ms"), "0", "0")
			if err := c.Run(); err != nil {
				fatal("burn-children: %v", err)
			}
		}
		fmt.Println("children done")
		sleep("")
	case "metrics": // metrics ADDR FILE: serve FILE's content as a Prometheus exposition (re-read on each request)
		addr, file := arg(args, 0, "127.0.0.1:9090"), arg(args, 1, "")
		err := http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := os.ReadFile(file)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			w.Write(b)
		}))
		fatal("metrics: %v", err)
	default:
		fatal("unknown mode %q", os.Args[1])
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func arg(args []string, i int, def string) string {
	if i < len(args) {
		return args[i]
	}
	return def
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		fatal("not a number: %q", s)
	}
	return n
}

func fatal(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "testchild: "+format+"\n", a...)
	os.Exit(2)
}

func sleep(d string) {
	if d == "" {
		for {
			time.Sleep(time.Hour) // a timer, unlike select{}, never trips the deadlock detector
		}
	}
	dur, err := time.ParseDuration(d)
	if err != nil {
		fatal("bad duration %q", d)
	}
	time.Sleep(dur)
}

func pgid() int {
	g, _ := syscall.Getpgid(0)
	return g
}

func trap(code int) {
	ch := make(chan os.Signal, 64)
	// every signal a process can take, but those Go's runtime keeps
	// (SIGPROF, SIGURG) and SIGCHLD
	for n := syscall.Signal(1); n <= 31; n++ {
		switch n {
		case syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGCHLD, syscall.SIGPROF, syscall.SIGURG:
			continue
		}
		signal.Notify(ch, n)
	}
	fmt.Println("trapping signals")
	readyNow()
	for s := range ch {
		fmt.Println("got", signalName(s.(syscall.Signal)))
		if s == syscall.SIGTERM || s == syscall.SIGINT || s == syscall.SIGQUIT {
			fmt.Println("draining")
			os.Exit(code)
		}
	}
}

// signalNames are the names kill -l gives, with the SIG prefix.
var signalNames = [...]string{1: "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV",
	"USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ",
	"VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS"}

func signalName(s syscall.Signal) string {
	if int(s) < len(signalNames) && signalNames[s] != "" {
		return "SIG" + signalNames[s]
	}
	return fmt.Sprintf("SIG%d", int(s))
}

func lines(count, size int, f *os.File) {
	w := bufio.NewWriterSize(f, 64<<10)
	line := make([]byte, 0, size+1)
	for i := 0; i < count; i++ {
		line = strconv.AppendInt(line[:0], int64(i), 10)
		line = append(line, ' ')
		for len(line) < size {
			line = append(line, byte('a'+len(line)%26))
		}
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			os.Exit(3)
		}
	}
	if err := w.Flush(); err != nil {
		os.Exit(3)
	}
}

func bigline(n int) {
	w := bufio.NewWriterSize(os.Stdout, 64<<10)
	for i := 0; i < n; i++ {
		w.WriteByte(byte('a' + i%26))
	}
	w.WriteByte('\n')
	if err := w.Flush(); err != nil {
		os.Exit(3)
	}
}

func orphans(count, code int, doneFile string) {
	self, err := os.Executable()
	if err != nil {
		fatal("%v", err)
	}
	for i := 0; i < count; i++ {
		// each orphan lives a few milliseconds, so most of them die after
		// their parent, as orphans of PID 1 or of the subreaper.
		c := exec.Command(self, "sleep", fmt.Sprintf("%dms", 20+i%50))
		if err := c.Start(); err != nil {
			fatal("start orphan %d: %v", i, err)
		}
	}
	fmt.Printf("left %d orphans\n", count)
	if doneFile != "" {
		if err := os.WriteFile(doneFile, nil, 0o644); err != nil {
			fatal("%v", err)
		}
	}
	os.Exit(code)
}

func background(code int, mode []string) {
	self, err := os.Executable()
	if err != nil {
		fatal("%v", err)
	}
	c := exec.Command(self, mode...)
	// a grandchild that traps signals says when it does (readyNow), so that
	// its parent's exit, which may stop it at once, comes after
	ready := fmt.Sprintf("%s/testchild-ready-%d", os.TempDir(), os.Getpid())
	c.Env = append(os.Environ(), "TESTCHILD_READY="+ready)
	defer os.Remove(ready)
	c.Stdout = os.Stdout // the grandchild holds the pipe open after we exit
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		fatal("start grandchild: %v", err)
	}
	fmt.Printf("grandchild pid=%d holds stdout\n", c.Process.Pid)
	if mode[0] == "trap" {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if _, err := os.Stat(ready); err == nil {
				break
			}
		}
	}
	os.Remove(ready)
	os.Exit(code)
}

// readyNow creates the file TESTCHILD_READY names, if any.
func readyNow() {
	if f := os.Getenv("TESTCHILD_READY"); f != "" {
		os.WriteFile(f, nil, 0o644)
	}
}

func sigstate() {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fatal("%v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "SigBlk:") || strings.HasPrefix(l, "SigIgn:") {
			fmt.Println(strings.Join(strings.Fields(l), " "))
		}
	}
}

func serve(addr string) {
	fmt.Println("serving on", addr)
	err := http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("request %s %s\n", r.Method, r.URL.Path)
		w.Write([]byte("ok\n"))
	}))
	fatal("serve: %v", err)
}

func tick(interval string, count int) {
	d, err := time.ParseDuration(interval)
	if err != nil {
		fatal("bad interval %q", interval)
	}
	for i := 1; count == 0 || i <= count; i++ {
		fmt.Printf("tick %d level=info\n", i)
		time.Sleep(d)
	}
}

// reaped waits (up to 20s) until the parent (the wrapper) has no other
// testchild child alive and no zombie child, then reports what it saw.
func reaped(doneFile string) {
	parent := os.Getppid()
	deadline := time.Now().Add(20 * time.Second)
	for doneFile != "" {
		if _, err := os.Stat(doneFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			fatal("%s never appeared", doneFile)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		live, zombies := 0, 0
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if err != nil {
				continue
			}
			// pid (comm) state ppid ...
			s := string(b)
			end := strings.LastIndexByte(s, ')')
			if end < 0 {
				continue
			}
			comm := s[strings.IndexByte(s, '(')+1 : end]
			f := strings.Fields(s[end+1:])
			if len(f) < 2 {
				continue
			}
			ppid, _ := strconv.Atoi(f[1])
			if ppid != parent {
				continue
			}
			switch {
			case f[0] == "Z":
				zombies++
			case comm == "testchild":
				live++
			}
		}
		if (live == 0 && zombies == 0) || time.Now().After(deadline) {
			fmt.Printf("live=%d zombies=%d\n", live, zombies)
			if zombies > 0 || live > 0 {
				os.Exit(1)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// burn spins until the process has used d of CPU time, holding mib MiB of
// memory it has written to (so that it is resident).
func burn(d string, mib int) {
	want, err := time.ParseDuration(d)
	if err != nil {
		fatal("bad duration %q", d)
	}
	held = make([]byte, mib<<20)
	for i := 0; i < len(held); i += 4096 {
		held[i] = 1
	}
	var ru syscall.Rusage
	x := 0
	for {
		for i := 0; i < 1_000_000; i++ {
			x += i
		}
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		if time.Duration(ru.Utime.Nano()+ru.Stime.Nano()) >= want {
			break
		}
	}
	sink = x
}

var (
	held []byte
	sink int
)
