package relay

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/go-logfmt/logfmt"
	"github.com/process-wrapper/process-wrapper/internal/logline"
)

func fixedNow() time.Time { return time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC) }

func source(format Format, max int, out io.Writer) *Source {
	return &Source{Format: format, Line: logline.NewLineFormat("app", "stdout", []logline.Label{{Key: "team", Value: "core"}}),
		Level: logline.Info, Out: logline.NewOutput(out), MaxLine: max, Now: fixedNow}
}

type record struct {
	level, msg string
	partial    bool
}

func parse(t *testing.T, out []byte) []record {
	t.Helper()
	var recs []record
	d := logfmt.NewDecoder(bytes.NewReader(out))
	for d.ScanRecord() {
		var r record
		for d.ScanKeyval() {
			switch string(d.Key()) {
			case "level":
				r.level = string(d.Value())
			case "msg":
				r.msg = string(d.Value())
			case "partial":
				r.partial = string(d.Value()) == "true"
			}
		}
		recs = append(recs, r)
	}
	if d.Err() != nil {
		t.Fatalf("decode %q: %v", out, d.Err())
	}
	return recs
}

func TestLines(t *testing.T) {
	in := "first\n\nthird with \"quotes\"\r\nlast without newline"
	// one byte per read: lines cross every read boundary
	for name, r := range map[string]io.Reader{"whole": strings.NewReader(in), "byte by byte": iotest.OneByteReader(strings.NewReader(in))} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			n, err := source(Logfmt, 0, &out).Run(r)
			if err != nil || n != 4 {
				t.Fatalf("n=%d err=%v", n, err)
			}
			got := parse(t, out.Bytes())
			want := []string{"first", "", "third with \"quotes\"\r", "last without newline"}
			for i, w := range want {
				if got[i].msg != w || got[i].level != "info" || got[i].partial {
					t.Errorf("line %d = %+v, want msg %q", i, got[i], w)
				}
			}
			if !strings.HasPrefix(out.String(), `ts=2026-11-25T08:00:00.000Z level=info app=app stream=stdout msg="first" team=core`+"\n") {
				t.Errorf("line shape: %q", out.String())
			}
		})
	}
}

func TestLongLinesAreCutAndMarked(t *testing.T) {
	const max = 16
	long := strings.Repeat("abcdefgh", 5) // 40 bytes: 16 + 16 + 8
	exact := strings.Repeat("x", max)     // exactly max: never split
	var out bytes.Buffer
	if _, err := source(Logfmt, max, &out).Run(iotest.HalfReader(strings.NewReader(long + "\n" + exact + "\nshort\n"))); err != nil {
		t.Fatal(err)
	}
	got := parse(t, out.Bytes())
	want := []record{{"info", long[:16], true}, {"info", long[16:32], true}, {"info", long[32:], false}, {"info", exact, false}, {"info", "short", false}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("piece %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestCutKeepsRunesWhole(t *testing.T) {
	// 15 ASCII bytes then a 3-byte rune: a cut at 16 would split it.
	line := strings.Repeat("a", 15) + "€" + strings.Repeat("b", 10)
	var out bytes.Buffer
	if _, err := source(Logfmt, 16, &out).Run(strings.NewReader(line + "\n")); err != nil {
		t.Fatal(err)
	}
	got := parse(t, out.Bytes())
	var joined string
	for _, r := range got {
		if strings.ContainsRune(r.msg, '\uFFFD') {
			t.Errorf("a piece holds U+FFFD: %q", r.msg)
		}
		joined += r.msg
	}
	if joined != line || !got[0].partial || got[len(got)-1].partial {
		t.Errorf("pieces %+v", got)
	}
}

func TestFreeFormatPassesLinesThrough(t *testing.T) {
	in := "raw \"line\" \xff\nlevel=error something\nno newline"
	var out bytes.Buffer
	if _, err := source(Free, 0, &out).Run(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	if out.String() != in+"\n" {
		t.Errorf("got %q", out.String())
	}
}

func TestAutoFormatTakesTheLinesLevel(t *testing.T) {
	in := "plain line\nERROR: disk full\n{\"level\":\"warn\",\"msg\":\"x\"}\nts=1 level=debug msg=y\nE1125 10:00:00.000000 1 x.go:1] boom\n"
	var out bytes.Buffer
	if _, err := source(Auto, 0, &out).Run(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	var levels []string
	for _, r := range parse(t, out.Bytes()) {
		levels = append(levels, r.level)
	}
	if got := strings.Join(levels, ","); got != "info,error,warn,debug,error" {
		t.Errorf("levels %s", got)
	}
}

func TestDetectLevel(t *testing.T) {
	cases := map[string]string{
		`{"level":"error","msg":"x"}`:                   "error",
		`{"msg":"x", "severity" : "WARNING"}`:           "warn",
		`{"lvl":"dbug"}`:                                "debug",
		`{"msg":"no level here ERROR"}`:                 "",
		`time=2024 level=warn msg="disk"`:               "warn",
		`lvl=eror msg=x`:                                "",
		`msg="level=info inside" level=error`:           "error",
		`2024-01-01 12:00:00 ERROR something`:           "error",
		`[WARN] careful`:                                "warn",
		`production.ERROR: failed`:                      "error",
		`INFO user clicked ERROR page`:                  "info",
		`ERRORS are not a level word`:                   "",
		`an error in lower case`:                        "",
		`W1125 10:00:00.000000 1 x.go:1] w`:             "warn",
		`I1125 10:00:00.000000 1 x.go:1] i`:             "info",
		`FATAL crash`:                                   "error",
		`DEBUG x`:                                       "debug",
		`   NOTICE: x`:                                  "info",
		``:                                              "",
		strings.Repeat("x ", 200) + "ERROR after 256 b": "",
	}
	for line, want := range cases {
		lvl, ok := DetectLevel([]byte(line))
		got := ""
		if ok {
			got = lvl.String()
		}
		if got != want {
			t.Errorf("DetectLevel(%q) = %q, want %q", line, got, want)
		}
	}
}

// A slow reader of the wrapper's output blocks the relay (and so the child)
// instead of losing lines.
func TestBackPressureLosesNothing(t *testing.T) {
	pr, pw := io.Pipe()
	in := strings.Repeat("0123456789\n", 20000)
	done := make(chan int)
	go func() {
		n, _ := source(Logfmt, 0, pw).Run(strings.NewReader(in))
		pw.Close()
		done <- n
	}()
	// read slowly, in small pieces
	var got bytes.Buffer
	buf := make([]byte, 333)
	for {
		n, err := pr.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if n := <-done; n != 20000 {
		t.Fatalf("relayed %d lines", n)
	}
	recs := parse(t, got.Bytes())
	if len(recs) != 20000 {
		t.Fatalf("read %d lines", len(recs))
	}
	for i, r := range recs {
		if r.msg != "0123456789" {
			t.Fatalf("line %d: %+v", i, r)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"": Logfmt, "logfmt": Logfmt, "FREE": Free, " auto ": Auto} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("json"); err == nil || !strings.Contains(err.Error(), "LOG_FORMAT") {
		t.Errorf("bad format error: %v", err)
	}
}

// BenchmarkRelay measures the relay alone: 100-byte lines read from memory in
// 64 KiB chunks, encoded and written to a discarding writer.
func BenchmarkRelay(b *testing.B) {
	var chunk bytes.Buffer
	for i := 0; chunk.Len() < 1<<20; i++ {
		chunk.WriteString(strings.Repeat("abcdefghij", 10)[:99])
		chunk.WriteByte('\n')
	}
	data := chunk.Bytes()
	lines := bytes.Count(data, []byte("\n"))
	src := &Source{Format: Logfmt, Line: logline.NewLineFormat("app", "stdout", nil), Out: logline.NewOutput(io.Discard)}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if n, _ := src.Run(bytes.NewReader(data)); n != lines {
			b.Fatalf("%d lines", n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
}
