package events

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/process-wrapper/process-wrapper/internal/lifecycle"
	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigFromEnv(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "labels")
	os.WriteFile(good, []byte("app=\"shop\"\n\nversion=\"1.2 \\\"beta\\\"\"\n"), 0o644)
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("app=\"shop\"\nversion=1.2\n"), 0o644)
	for _, c := range []struct {
		name string
		env  map[string]string
		want string // part of the error; "" for none
	}{
		{"unset", map[string]string{"METRICS_JSON_EXTRA_LABELS": "not json"}, ""},
		{"address without port", map[string]string{"METRICS_SERVER_ADDRESS": "metrics"}, "METRICS_SERVER_ADDRESS: want host:port"},
		{"labels not json", map[string]string{"METRICS_SERVER_ADDRESS": "m:9999", "METRICS_JSON_EXTRA_LABELS": "{team: core}"}, "METRICS_JSON_EXTRA_LABELS"},
		{"labels not strings", map[string]string{"METRICS_SERVER_ADDRESS": "m:9999", "METRICS_JSON_EXTRA_LABELS": `{"n": 1}`}, "METRICS_JSON_EXTRA_LABELS"},
		{"labels file missing", map[string]string{"METRICS_SERVER_ADDRESS": "m:9999", "METRICS_EXTRA_LABELS_FILE_PATH": filepath.Join(dir, "none")}, "METRICS_EXTRA_LABELS_FILE_PATH"},
		{"labels file bad line", map[string]string{"METRICS_SERVER_ADDRESS": "m:9999", "METRICS_EXTRA_LABELS_FILE_PATH": bad}, bad + `:2: the value of "version" is not a quoted string`},
		{"good", map[string]string{"METRICS_SERVER_ADDRESS": "m:9999", "METRICS_EXTRA_LABELS_FILE_PATH": good, "METRICS_JSON_EXTRA_LABELS": `{"team":"core"}`}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ConfigFromEnv(env(c.env))
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
	l, err := ReadLabelsFile(good)
	if err != nil || l["app"] != "shop" || l["version"] != `1.2 "beta"` || len(l) != 2 {
		t.Errorf("labels %v %v", l, err)
	}
}

// receive listens on loopback and returns the address and the datagrams.
func receive(t *testing.T) (string, <-chan []byte) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	ch := make(chan []byte, 1000)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			ch <- append([]byte(nil), buf[:n]...)
		}
	}()
	return pc.LocalAddr().String(), ch
}

func next(t *testing.T, ch <-chan []byte) lifecycle.Event {
	t.Helper()
	select {
	case b := <-ch:
		var e lifecycle.Event
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("datagram %q: %v", b, err)
		}
		if len(b) > lifecycle.MaxDatagram {
			t.Errorf("datagram of %d bytes", len(b))
		}
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no datagram")
	}
	return lifecycle.Event{}
}

// A reason too long for a datagram is shortened at a rune boundary; only
// lifecycle events are sent; the last queued events go out at the end.
func TestSender(t *testing.T) {
	addr, ch := receive(t)
	s := NewSender(SenderConfig{Address: addr, Node: "n1", Labels: map[string]string{"team": "core"}}, logline.NewLogger(logline.NewOutput(io.Discard), "test"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	s.Observe(&Event{Kind: ProbeCheck, Process: "web"}) // counted, never sent
	s.Observe(&Event{Kind: ProcessExit, Process: "web", Pid: 7, Code: 0})
	e := next(t, ch)
	if e.Event != ProcessExit || e.Code == nil || *e.Code != 0 || e.Pid != 7 || e.Node != "n1" || e.Labels["team"] != "core" || e.Time.IsZero() {
		t.Errorf("exit event %+v", e)
	}
	long := strings.Repeat("é", 20000) // 40,000 bytes
	s.Observe(&Event{Kind: ProbeFailure, Process: "web", Reason: long})
	e = next(t, ch)
	if !strings.HasSuffix(e.Reason, " [cut]") || !utf8.ValidString(e.Reason) || len(e.Reason) < 10000 {
		t.Errorf("reason of %d bytes, ends %q", len(e.Reason), e.Reason[max(0, len(e.Reason)-10):])
	}
	cancel()
	<-done
	if s.Sent.Load() != 2 {
		t.Errorf("sent %d, want 2", s.Sent.Load())
	}
}

// A server that comes up after the first event (its Service had no
// endpoint yet, say) gets the next one: the refusal of the first, which a
// connected socket reports on the next write, costs only the first.
func TestSenderServerComesUpLater(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close() // nothing listens: the first datagram is refused (ICMP port unreachable)
	s := NewSender(SenderConfig{Address: addr}, logline.NewLogger(logline.NewOutput(io.Discard), "test"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	s.Observe(&Event{Kind: ProcessStart, Process: "early"})
	waitfor.Condition(t, 5*time.Second, "the first event to be sent into the void", func() bool { return s.Sent.Load() == 1 })
	pc, err = net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s.Observe(&Event{Kind: Preemption, Reason: "preempted"})
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("the event after the server came up did not arrive: %v (sent %d, dropped %d)", err, s.Sent.Load(), s.Dropped[DropSendError].Load())
	}
	var e lifecycle.Event
	if err := json.Unmarshal(buf[:n], &e); err != nil || e.Event != Preemption {
		t.Errorf("got %q: %v", buf[:n], err)
	}
}

// Observe never blocks: past the queue, events are counted as dropped.
func TestSenderQueueFull(t *testing.T) {
	s := NewSender(SenderConfig{Address: "127.0.0.1:9"}, logline.NewLogger(logline.NewOutput(io.Discard), "test"))
	for range queueLen + 10 {
		s.Observe(&Event{Kind: ProcessStart, Process: "a"}) // Run is not running: nothing drains the queue
	}
	if got := s.Dropped[DropQueueFull].Load(); got != 10 {
		t.Errorf("dropped %d, want 10", got)
	}
}

// A server name that does not resolve costs one bounded lookup for a burst,
// and the drain at exit is bounded too: the wrapper's exit never waits long
// for the metrics server.
func TestSenderUnresolvable(t *testing.T) {
	s := NewSender(SenderConfig{Address: "metrics-server.invalid:9999"}, logline.NewLogger(logline.NewOutput(io.Discard), "test"))
	for range 100 {
		s.Observe(&Event{Kind: ProcessExit, Process: "a"})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the wrapper is exiting: Run drains the queue and returns
	began := time.Now()
	s.Run(ctx)
	if took := time.Since(began); took > dialTimeout+drainFor {
		t.Errorf("Run took %v to drain 100 events to an unresolvable server", took)
	}
	if got := s.Dropped[DropSendError].Load(); got != 100 || s.Sent.Load() != 0 {
		t.Errorf("dropped %d (send_error), sent %d; want 100 and 0", got, s.Sent.Load())
	}
}

// The downward API rewrites the labels file when the pod's labels change:
// the next event carries the new labels.
func TestSenderLabelsFileChanges(t *testing.T) {
	addr, ch := receive(t)
	file := filepath.Join(t.TempDir(), "labels")
	os.WriteFile(file, []byte("app=\"shop\"\nversion=\"1\"\n"), 0o644)
	s := NewSender(SenderConfig{Address: addr, LabelsFile: file, Exclude: []string{"version"}}, logline.NewLogger(logline.NewOutput(io.Discard), "test"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	s.Observe(&Event{Kind: ProcessStart, Process: "a"})
	if e := next(t, ch); len(e.Labels) != 1 || e.Labels["app"] != "shop" {
		t.Errorf("labels %v", e.Labels)
	}
	os.WriteFile(file, []byte("app=\"shop\"\ntier=\"gold\"\nversion=\"2\"\n"), 0o644) // a new size: read again
	s.Observe(&Event{Kind: ProcessStart, Process: "a"})
	if e := next(t, ch); len(e.Labels) != 2 || e.Labels["tier"] != "gold" {
		t.Errorf("labels after the change %v", e.Labels)
	}
}
