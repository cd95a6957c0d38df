package logline

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-logfmt/logfmt"
)

// decode parses one logfmt line with go-logfmt into ordered pairs.
func decode(t testing.TB, line []byte) [][2]string {
	t.Helper()
	d := logfmt.NewDecoder(bytes.NewReader(line))
	var kvs [][2]string
	for d.ScanRecord() {
		for d.ScanKeyval() {
			kvs = append(kvs, [2]string{string(d.Key()), string(d.Value())})
		}
	}
	if err := d.Err(); err != nil {
		t.Fatalf("go-logfmt cannot decode %q: %v", line, err)
	}
	return kvs
}

// normalize is what a message must decode back to: the original bytes with
// each byte of invalid UTF-8 replaced by U+FFFD.
func normalize(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			sb.WriteRune(utf8.RuneError)
		} else {
			sb.Write(b[:size])
		}
		b = b[size:]
	}
	return sb.String()
}

var corpus = []string{
	"", "plain text", `quote " inside`, `back\slash`, "tab\there", "cr\rhere", "nul\x00byte", "bell\x07",
	"del\x7f", "key=value pairs=here", "invalid \xff\xfe utf8", "truncated \xe2\x82", "emoji 😀 ok",
	"é à ü", "\\\"\\\"", "ends with backslash \\", "trailing space ", "  leading", "{\"json\":true}",
	"ESC\x1b[31mred\x1b[0m", strings.Repeat("x", 300), "\ufffd literal replacement", "\xc0\xaf overlong",
}

func TestLineRoundTrip(t *testing.T) {
	f := NewLineFormat("web app", "stdout", []Label{{"team", "core"}, {"tier", "a b"}, {"bad key", "x=y"}})
	var c Clock
	ts := c.Format(time.Date(2026, 11, 25, 10, 4, 5, 678_900_000, time.FixedZone("X", 3600)))
	if string(ts) != "2026-11-25T09:04:05.678Z" {
		t.Fatalf("timestamp %q", ts)
	}
	for _, msg := range corpus {
		line := f.AppendLine(nil, ts, Warn, []byte(msg), false)
		if line[len(line)-1] != '\n' || bytes.Count(line, []byte("\n")) != 1 {
			t.Fatalf("not one line: %q", line)
		}
		kvs := decode(t, line)
		want := [][2]string{{"ts", "2026-11-25T09:04:05.678Z"}, {"level", "warn"}, {"app", "web app"}, {"stream", "stdout"},
			{"msg", normalize([]byte(msg))}, {"team", "core"}, {"tier", "a b"}, {"bad_key", "x=y"}}
		if len(kvs) != len(want) {
			t.Fatalf("%q decoded to %q", line, kvs)
		}
		for i := range want {
			if kvs[i] != want[i] {
				t.Errorf("message %q: pair %d = %q, want %q (line %q)", msg, i, kvs[i], want[i], line)
			}
		}
	}
	partial := f.AppendLine(nil, ts, Info, []byte("piece"), true)
	kvs := decode(t, partial)
	if last := kvs[len(kvs)-1]; last != [2]string{"partial", "true"} {
		t.Errorf("partial line ends with %q", last)
	}
}

// The hand-written fast quoting means what go-logfmt's own encoder means.
func TestQuoteMatchesGoLogfmt(t *testing.T) {
	for _, msg := range corpus {
		ours := []byte(`k="` + string(AppendQuotedBody(nil, []byte(msg))) + `"`)
		theirs, err := logfmt.MarshalKeyvals("k", msg)
		if err != nil {
			t.Fatal(err)
		}
		if a, b := decode(t, ours), decode(t, theirs); len(a) != 1 || len(b) != 1 || a[0] != b[0] {
			t.Errorf("%q: ours %s decodes to %q, go-logfmt %s to %q", msg, ours, a, theirs, b)
		}
	}
}

func TestLoggerLine(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(NewOutput(&buf), "process-wrapper")
	l.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC) }
	l.Info("process exited", "process", "web", "code", 3, "err", errString("boom \"x\""), "odd")
	l.Debug("hidden")
	l.SetDebug(true)
	l.Debug("shown", "m", map[string]int{"a": 1})
	want := `ts=2026-01-02T03:04:05.006Z level=info app=process-wrapper msg="process exited" process=web code=3 err="boom \"x\"" odd=(missing)` + "\n" +
		`ts=2026-01-02T03:04:05.006Z level=debug app=process-wrapper msg="shown" m=map[a:1]` + "\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func FuzzLine(f *testing.F) {
	for _, s := range corpus {
		f.Add([]byte(s))
	}
	lf := NewLineFormat("app", "stderr", []Label{{"k", "v"}})
	f.Fuzz(func(t *testing.T, msg []byte) {
		line := lf.AppendLine(nil, []byte("2026-01-01T00:00:00.000Z"), Error, msg, false)
		if bytes.IndexByte(line, '\n') != len(line)-1 {
			t.Fatalf("line break inside %q", line)
		}
		if !utf8.Valid(line) {
			t.Fatalf("invalid UTF-8 out: %q", line)
		}
		kvs := decode(t, line)
		if len(kvs) != 6 || kvs[4][0] != "msg" || kvs[4][1] != normalize(msg) {
			t.Fatalf("%q decoded to %q", msg, kvs)
		}
		checkAppendLines(t, lf, msg)
	})
}

// checkAppendLines checks that AppendLines on buf gives, line for line,
// what AppendLine gives for each complete line of it, stops at the first
// line longer than max, and leaves the unfinished rest.
func checkAppendLines(t *testing.T, lf *LineFormat, buf []byte) {
	t.Helper()
	ts := []byte("2026-01-01T00:00:00.000Z")
	for _, max := range []int{MaxLine, 7} {
		var want []byte
		wantLines, wantConsumed := 0, 0
		for rest := buf; ; {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 || i > max {
				break
			}
			want = lf.AppendLine(want, ts, Warn, rest[:i], false)
			wantLines++
			wantConsumed += i + 1
			rest = rest[i+1:]
		}
		got, consumed, lines := lf.AppendLines([]byte("kept "), ts, Warn, buf, max)
		if string(got) != "kept "+string(want) || consumed != wantConsumed || lines != wantLines {
			t.Fatalf("AppendLines(%q, max %d) = %q, %d, %d; want %q, %d, %d", buf, max, got, consumed, lines, "kept "+string(want), wantConsumed, wantLines)
		}
	}
}

// Every kind of byte that needs escaping, at every place of an 8-byte word
// and after bytes whose arithmetic carries or borrows into it.
func TestAppendLinesMatchesAppendLine(t *testing.T) {
	lf := NewLineFormat("app", "stdout", []Label{{"team", "core"}})
	specials := []string{"\n", "\"", "\\", "\x7f", "\x00", "\x1f", "\t", "\r", "\x80", "\xff", "é", "€", "\xe2\x82", "\xf0\x9f\x98\x80", " ", "~", "!", "#", "[", "]"}
	for _, a := range specials {
		for _, b := range specials {
			for pos := 0; pos < 10; pos++ {
				buf := strings.Repeat("x", pos) + a + strings.Repeat("y", 9-pos) + b + "z\n" + "tail"
				checkAppendLines(t, lf, []byte(buf))
			}
		}
	}
	for _, s := range corpus {
		checkAppendLines(t, lf, []byte(s+"\n"+s+"\n"+s))
	}
}

// BenchmarkAppendLine: a 100-byte line of plain text (the fast path), and
// one of JSON where every few bytes need escaping.
func BenchmarkAppendLine(b *testing.B) {
	for name, msg := range map[string]string{
		"plain":   strings.Repeat("0123456789 abcdefghi ", 5)[:100],
		"escaped": strings.Repeat(`{"k":"v\u00e9"} `, 7)[:100],
	} {
		b.Run(name, func(b *testing.B) {
			lf := NewLineFormat("web", "stdout", []Label{{"team", "core"}})
			ts := []byte("2026-01-01T00:00:00.000Z")
			buf := make([]byte, 0, 4096)
			line := []byte(msg) // as the relay has it: read into a buffer
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				buf = lf.AppendLine(buf[:0], ts, Info, line, false)
			}
		})
	}
}

// BenchmarkAppendLines: what the relay encodes at each read, 64 KiB of
// 98-byte lines of plain text (the bench's writer's lines).
func BenchmarkAppendLines(b *testing.B) {
	lf := NewLineFormat("loud", "stdout", nil)
	ts := []byte("2026-01-01T00:00:00.000Z")
	filler := strings.Repeat("abcdefghij", 10)[:83]
	var in []byte
	for i := 0; len(in)+98 <= 64<<10; i++ {
		in = fmt.Appendf(in, "line %08d %s\n", i, filler)
	}
	lines := bytes.Count(in, []byte("\n"))
	out := make([]byte, 0, 2*len(in))
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		var n, k int
		out, n, k = lf.AppendLines(out[:0], ts, Info, in, MaxLine)
		if n != len(in) || k != lines {
			b.Fatalf("consumed %d of %d bytes, %d of %d lines", n, len(in), k, lines)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
}

func BenchmarkClock(b *testing.B) {
	var c Clock
	b.ReportAllocs()
	for b.Loop() {
		_ = c.Format(time.Now())
	}
}

// The timestamp is time's RFC 3339 with milliseconds in UTC, whatever the
// instant and its zone.
func TestTimestampMatchesTimeFormat(t *testing.T) {
	zone := time.FixedZone("x", -7*3600-30*60)
	for _, at := range []time.Time{
		time.Date(2026, 12, 2, 15, 4, 5, 999_999_999, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 1_000_000, zone),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-5, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(0, 0).In(zone),
	} {
		for step := 0; step < 2000; step++ {
			at = at.Add(time.Duration(step) * 7919 * time.Microsecond * 1013)
			want := at.UTC().AppendFormat(nil, "2006-01-02T15:04:05.000Z07:00")
			if got := appendTimestamp(nil, at); string(got) != string(want) {
				t.Fatalf("%v: %s, want %s", at, got, want)
			}
		}
	}
}
