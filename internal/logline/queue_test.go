package logline

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// While the output is blocked, logging never waits: lines beyond the queue
// are dropped from its middle, the first and the newest stay, Always lines
// are never dropped, and once the output moves one line says how many went.
func TestQueueDropsFromTheMiddleWhileBlocked(t *testing.T) {
	r, w := io.Pipe() // nothing reads it yet: every write blocks
	log := NewLogger(NewOutput(w), "process-wrapper")
	log.Async()
	const n = 3 * QueueLimit
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		for i := 0; i < n; i++ {
			if i == n/2 {
				log.Always("shutting down")
			}
			log.Info("line", "i", i)
		}
		log.Always("exiting", "code", 3)
	}()
	select {
	case <-logged:
	case <-time.After(10 * time.Second):
		t.Fatal("logging waited for a blocked output")
	}
	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			got = append(got, sc.Text())
		}
	}()
	log.Close(time.Second)
	w.Close()
	<-done
	text := strings.Join(got, "\n")
	for _, want := range []string{`msg="line" i=0` + "\n", `msg="line" i=1` + "\n", fmt.Sprintf(`msg="line" i=%d`, n-1) + "\n", `msg="shutting down"`, `msg="exiting" code=3`} {
		if !strings.Contains(text+"\n", want) {
			t.Errorf("lost %q", want)
		}
	}
	dropped := log.Dropped()
	if dropped == 0 || int(dropped)+len(got) < n+2 {
		t.Errorf("%d lines written, %d dropped, of %d", len(got), dropped, n+2)
	}
	// each time the output moved again, one line said how many went since
	var reported uint64
	for _, l := range got {
		if _, n, ok := strings.Cut(l, `msg="dropped the wrapper's own log lines while its output was blocked" dropped=`); ok {
			var k uint64
			fmt.Sscan(n, &k)
			reported += k
		}
	}
	if reported != dropped {
		t.Errorf("the reports say %d lines were dropped, the count %d:\n%s", reported, dropped, text[max(0, len(text)-500):])
	}
}

// Close gives up on an output that never moves again.
func TestCloseGivesUpOnAStuckOutput(t *testing.T) {
	_, w := io.Pipe()
	log := NewLogger(NewOutput(w), "process-wrapper")
	log.Async()
	log.Always("exiting", "code", 0)
	closed := make(chan struct{})
	go func() { log.Close(100 * time.Millisecond); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for an output that never moves")
	}
}
