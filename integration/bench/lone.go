package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const loneSamples = 300

// loneTable measures how long a line written alone takes to come out of
// the wrapper while another child writes as fast as it can: the quiet
// child stamps each line with the time it wrote it, and the bench reads
// the wrapper's output as fast as it comes. The baseline is the same pair
// of writers with a `cat` where the wrapper is: what the machine's
// scheduler alone adds on two cores kept busy.
func loneTable() {
	loud := strings.Repeat("a noisy line of the heavy writer beside it ", 3)[:97]
	cfg := writeConfig("lone.yaml", fmt.Sprintf(`
- {name: loud, entrypoint: yes, args: [%q]}
- {name: quiet, entrypoint: CHILD, args: [stamp, 10ms, "%d"], restartPolicy: Never}
`, loud, loneSamples))
	wp50, wp99, wrate := lone([]string{wrapper, "-config", cfg, "-http-address", freeAddr(), "-readiness-file", tmp + "/lone-ready"},
		`app=quiet stream=stdout msg="stamp `, `"`)
	sh := fmt.Sprintf(`yes %q | cat & %s stamp 10ms %d | cat; kill $!`, loud, child, loneSamples)
	bp50, bp99, brate := lone([]string{"sh", "-c", sh}, "stamp ", "\n")
	fmt.Println("| figure | value | baseline in the same run | goal | |")
	fmt.Println("|---|---|---|---|---|")
	fmt.Printf("| a line written alone every 10 ms while `yes` writes 98 B lines beside it | p50 %v, p99 %v (%.0f MB/s beside it) | `yes \\| cat` and `quiet \\| cat`: p50 %v, p99 %v (%.0f MB/s) | p50 and p99 <= 10 ms | %s |\n",
		wp50.Round(time.Microsecond), wp99.Round(time.Microsecond), wrate, bp50.Round(time.Microsecond), bp99.Round(time.Microsecond), brate,
		met(wp50 <= 10*time.Millisecond && wp99 <= 10*time.Millisecond))
}

// lone runs argv, reads its output as fast as it comes, and returns the
// p50 and p99 of the delay from each stamp (unix ns after mark, up to end)
// to its reading, and the MB/s of the rest of the output.
func lone(argv []string, mark, end string) (p50, p99 time.Duration, mbps float64) {
	cmd := exec.Command(argv[0], argv[1:]...)
	r, w, err := os.Pipe()
	if err != nil {
		fail(err)
	}
	cmd.Stdout = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fail(err)
	}
	w.Close()
	var lat []time.Duration
	var total int64
	buf := make([]byte, 1<<20)
	var rest []byte
	m := []byte(mark)
	began := time.Now()
	for len(lat) < loneSamples {
		n, err := r.Read(buf)
		now := time.Now()
		total += int64(n)
		chunk := append(rest, buf[:n]...)
		for {
			i := bytes.Index(chunk, m)
			if i < 0 {
				break
			}
			j := bytes.Index(chunk[i+len(m):], []byte(end))
			if j < 0 {
				break // the rest of the line comes with the next read
			}
			ns, perr := strconv.ParseInt(string(chunk[i+len(m):i+len(m)+j]), 10, 64)
			if perr != nil {
				fail(fmt.Errorf("%q: bad stamp line: %v", argv[0], perr))
			}
			lat = append(lat, now.Sub(time.Unix(0, ns)))
			chunk = chunk[i+len(m)+j:]
		}
		// keep what may hold the start of a stamp line cut by the read
		if k := len(chunk) - len(m) - 32; k > 0 {
			chunk = chunk[k:]
		}
		rest = append(rest[:0], chunk...)
		if err != nil {
			fail(fmt.Errorf("%q: the output ended after %d stamps", argv[0], len(lat)))
		}
	}
	took := time.Since(began)
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	go func() {
		for {
			if _, err := r.Read(buf); err != nil {
				return
			}
		}
	}()
	cmd.Wait()
	r.Close()
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100], float64(total) / took.Seconds() / 1e6
}
