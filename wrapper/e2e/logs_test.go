package e2e

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logfmt/logfmt"
)

// expectedLine is line i of "testchild lines N size".
func expectedLine(i, size int) string {
	b := strconv.AppendInt(nil, int64(i), 10)
	b = append(b, ' ')
	for len(b) < size {
		b = append(b, byte('a'+len(b)%26))
	}
	return string(b)
}

// streamChecker verifies, per app and stream, that the lines arrive in order
// and byte for byte.
type streamChecker struct {
	mu     sync.Mutex
	size   int
	next   map[string]int
	errors []string
}

func (c *streamChecker) sink(b []byte) bool {
	if !bytes.Contains(b, []byte(" stream=")) {
		return false
	}
	d := logfmt.NewDecoderSize(bytes.NewReader(b), len(b)+1)
	var app, stream, msg string
	for d.ScanRecord() {
		for d.ScanKeyval() {
			switch string(d.Key()) {
			case "app":
				app = string(d.Value())
			case "stream":
				stream = string(d.Value())
			case "msg":
				msg = string(d.Value())
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	key := app + "/" + stream
	i := c.next[key]
	if d.Err() != nil {
		c.errors = append(c.errors, fmt.Sprintf("%s line %d does not decode: %v", key, i, d.Err()))
	} else if want := expectedLine(i, c.size); msg != want && len(c.errors) < 5 {
		c.errors = append(c.errors, fmt.Sprintf("%s line %d = %q, want %q", key, i, msg, want))
	}
	c.next[key] = i + 1
	return true
}

func TestMillionLinesLossless(t *testing.T) {
	if testing.Short() {
		t.Skip("relays a million lines")
	}
	c := &streamChecker{size: 100, next: map[string]int{}}
	w := start(t, config(t, `
- {name: loud, entrypoint: CHILD, args: [lines, "1000000", "100"], restartPolicy: Never}`), opts{sink: c.sink})
	if code := w.wait(60 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if got := c.next["loud/stdout"]; got != 1000000 {
		t.Errorf("relayed %d lines, want 1000000", got)
	}
	for _, e := range c.errors {
		t.Error(e)
	}
}

func TestConcurrentProcessesNeverInterleave(t *testing.T) {
	c := &streamChecker{size: 120, next: map[string]int{}}
	var cfg strings.Builder
	for i := 0; i < 4; i++ {
		fmt.Fprintf(&cfg, "- {name: p%d, entrypoint: CHILD, args: [lines-both, \"50000\", \"120\"], restartPolicy: Never}\n", i)
	}
	w := start(t, config(t, cfg.String()), opts{sink: c.sink})
	if code := w.wait(60 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	for i := 0; i < 4; i++ {
		for _, s := range []string{"stdout", "stderr"} {
			if got := c.next[fmt.Sprintf("p%d/%s", i, s)]; got != 50000 {
				t.Errorf("p%d %s: %d lines", i, s, got)
			}
		}
	}
	for _, e := range c.errors {
		t.Error(e)
	}
	if raw := w.raw.String(); raw != "" {
		t.Errorf("output that is not logfmt: %.200q", raw)
	}
}

func pattern(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return string(b)
}

func TestOneMebibyteLineIsNeverSplit(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: big, entrypoint: CHILD, args: [bigline, "1048576"], restartPolicy: Never}`), opts{})
	if code := w.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	got := w.find("app", "big")
	if len(got) != 1 || got[0]["partial"] != "" || got[0]["msg"] != pattern(1<<20) {
		t.Fatalf("%d lines for a 1 MiB line (partial=%q, %d bytes)", len(got), got[0]["partial"], len(got[0]["msg"]))
	}
}

func TestLongerLinesComeBackAsMarkedPieces(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: huge, entrypoint: CHILD, args: [bigline, "3145728"], restartPolicy: Never}`), opts{})
	if code := w.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	pieces := w.find("app", "huge")
	if len(pieces) != 3 {
		t.Fatalf("%d pieces, want 3", len(pieces))
	}
	var joined strings.Builder
	for i, p := range pieces {
		if want := i < 2; (p["partial"] == "true") != want {
			t.Errorf("piece %d partial=%q", i, p["partial"])
		}
		if len(p["msg"]) > 1<<20 {
			t.Errorf("piece %d holds %d bytes", i, len(p["msg"]))
		}
		joined.WriteString(p["msg"])
	}
	if joined.String() != pattern(3<<20) {
		t.Error("the pieces do not join into the original line")
	}
}

func TestOddOutput(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: nonl, entrypoint: CHILD, args: [raw, 'first\nlast without newline'], restartPolicy: Never}
- {name: bytes, entrypoint: CHILD, args: [raw, 'bad \xff\xfe utf8 \x00 nul \" quote\n'], restartPolicy: Never}
- {name: empty, entrypoint: CHILD, args: [raw, '\n\n'], restartPolicy: Never}`), opts{})
	if code := w.wait(5 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	w.waitLine(time.Second, "app", "nonl", "msg", "last without newline")
	w.waitLine(time.Second, "app", "bytes", "msg", "bad \uFFFD\uFFFD utf8 \x00 nul \" quote")
	if got := w.find("app", "empty", "msg", ""); len(got) != 2 {
		t.Errorf("%d empty lines, want 2", len(got))
	}
}

func TestLogLabelsAndLevels(t *testing.T) {
	t.Parallel()
	var raw bytes.Buffer
	var mu sync.Mutex
	w := start(t, config(t, `
- name: labelled
  entrypoint: sh
  args: [-c, "echo out; echo err >&2"]
  logLabels: {team: core, "tier": "a b"}
  restartPolicy: Never`), opts{raw: lockedWriter{&mu, &raw}})
	if code := w.wait(5 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	mu.Lock()
	out := raw.String()
	mu.Unlock()
	for _, want := range []string{
		` level=info app=labelled stream=stdout msg="out" team=core tier="a b"` + "\n",
		` level=error app=labelled stream=stderr msg="err" team=core tier="a b"` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestLogFormats(t *testing.T) {
	t.Parallel()
	cfg := config(t, `
- {name: app, entrypoint: CHILD, args: [print, "plain", "WARN careful", "{\"level\":\"error\"}"], restartPolicy: Never}`)
	t.Run("free", func(t *testing.T) {
		var raw bytes.Buffer
		var mu sync.Mutex
		w := start(t, cfg, opts{env: []string{"LOG_FORMAT=free"}, raw: lockedWriter{&mu, &raw}})
		w.wait(5 * time.Second)
		mu.Lock()
		defer mu.Unlock()
		// the child's lines untouched and in order; the wrapper's own
		// lines may come between them (another writer)
		var child []string
		for _, l := range strings.Split(raw.String(), "\n") {
			if l != "" && !strings.HasPrefix(l, "ts=") {
				child = append(child, l)
			}
		}
		if want := []string{"plain", "WARN careful", `{"level":"error"}`}; strings.Join(child, "\n") != strings.Join(want, "\n") {
			t.Errorf("free output, the child's lines %q:\n%s", child, raw.String())
		}
	})
	t.Run("auto", func(t *testing.T) {
		w := start(t, cfg, opts{env: []string{"LOG_FORMAT=auto"}})
		w.wait(5 * time.Second)
		w.waitLine(time.Second, "app", "app", "msg", "plain", "level", "info")
		w.waitLine(time.Second, "app", "app", "msg", "WARN careful", "level", "warn")
		w.waitLine(time.Second, "app", "app", "msg", `{"level":"error"}`, "level", "error")
	})
	t.Run("bad", func(t *testing.T) {
		w := start(t, cfg, opts{env: []string{"LOG_FORMAT=xml"}})
		if code := w.wait(5 * time.Second); code != 2 {
			t.Errorf("exit code %d", code)
		}
		w.waitLine(time.Second, "msg", "bad environment")
	})
}

// A process has ended when it exits, even if a grandchild still holds its
// stdout: the exit is seen at once and the wrapper does not wait for the pipe.
func TestExitSeenWhileGrandchildHoldsThePipe(t *testing.T) {
	t.Parallel()
	w := start(t, config(t, `
- {name: bg, entrypoint: CHILD, args: [background, "3"], restartPolicy: Never}`), opts{})
	started := time.Now()
	if code := w.wait(10 * time.Second); code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
	if took := time.Since(started); took > 5*time.Second {
		t.Errorf("the wrapper waited %v for a pipe held by a grandchild", took)
	}
	w.waitLine(time.Second, "app", "bg", "stream", "stdout")
}
