// Package logline holds the one logfmt line shape of process-wrapper:
//
//	ts=<RFC3339 ms UTC> level=<level> app=<name> [stream=<stdout|stderr>] msg="<text>" [labels...] [partial=true]
//
// It is shared by the wrapper's log relay (the hot path: every line every
// child writes goes through AppendLine) and by the logfmt logger that the
// wrapper and the other binaries use for their own messages.
package logline

import (
	"encoding/binary"
	"math/bits"
	"time"
	"unicode/utf8"
)

// Level is the severity written in the level key.
type Level uint8

// The levels SPEC.md allows, in the order of their index in LineFormat.
const (
	Info Level = iota
	Warn
	Error
	Debug
	numLevels
)

var levelNames = [numLevels]string{"info", "warn", "error", "debug"}

// String returns the level as it is written in a line.
func (l Level) String() string {
	if l >= numLevels {
		return "info"
	}
	return levelNames[l]
}

// MaxLine is the longest message (in bytes) that is never split; a longer
// line is cut into pieces of at most MaxLine bytes, all but the last marked
// partial=true, as CRI's P/F tags do.
const MaxLine = 1 << 20

// LineFormat holds the precomputed bytes around the message of one source
// (one process stream, or the wrapper itself), so that a line costs a
// timestamp copy, two appends and the quoting of its message.
type LineFormat struct {
	head        [numLevels][]byte // " level=info app=web stream=stdout msg=\""
	tail        []byte            // "\" team=core\n"
	partialTail []byte            // "\" team=core partial=true\n"
}

// NewLineFormat precomputes the line shape for app (and stream, which may be
// empty for the wrapper's own messages) with the given labels in order.
func NewLineFormat(app, stream string, labels []Label) *LineFormat {
	f := &LineFormat{}
	for l := Level(0); l < numLevels; l++ {
		h := []byte(" level=")
		h = append(h, levelNames[l]...)
		h = append(h, " app="...)
		h = AppendValue(h, app)
		if stream != "" {
			h = append(h, " stream="...)
			h = AppendValue(h, stream)
		}
		h = append(h, ` msg="`...)
		f.head[l] = h
	}
	t := []byte{'"'}
	for _, kv := range labels {
		t = append(t, ' ')
		t = AppendKey(t, kv.Key)
		t = append(t, '=')
		t = AppendValue(t, kv.Value)
	}
	f.partialTail = append(append([]byte(nil), t...), " partial=true\n"...)
	f.tail = append(t, '\n')
	return f
}

// Label is one key=value pair added to every line of a source.
type Label struct{ Key, Value string }

// AppendLine appends one complete line: ts (already formatted by a Clock),
// the precomputed head for lvl, msg quoted, and the tail.
func (f *LineFormat) AppendLine(dst, ts []byte, lvl Level, msg []byte, partial bool) []byte {
	if lvl >= numLevels {
		lvl = Info
	}
	dst = append(dst, "ts="...)
	dst = append(dst, ts...)
	dst = append(dst, f.head[lvl]...)
	dst = AppendQuotedBody(dst, msg)
	if partial {
		return append(dst, f.partialTail...)
	}
	return append(dst, f.tail...)
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special returns, for the 8 bytes of w, a mask whose lowest set bit is the
// high bit of the first byte that is not plain printable ASCII: a control
// byte (the newline among them), '"', '\\', DEL or a byte >= 0x80. Bits
// above the lowest one may be false alarms (a borrow or carry out of that
// byte); a zero mask means all 8 bytes are plain.
func special(w uint64) uint64 {
	ctl := w - 0x20*ones            // borrows where a byte < 0x20; bytes >= 0xa0 set their high bit too
	del := w + ones                 // 0x7f becomes 0x80; bytes >= 0x80 are caught by w itself
	q := (w ^ ('"' * ones)) - ones  // borrows where a byte == '"'
	b := (w ^ ('\\' * ones)) - ones // borrows where a byte == '\\'
	return (ctl | del | q | b | w) & highs
}

var safeByte = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return
}()

const hexDigits = "0123456789abcdef"

// AppendQuotedBody appends s escaped for the inside of a logfmt quoted value,
// with go-logfmt's rules: \" \\ \n \r \t, \u00XX for other control bytes and DEL, and
// \ufffd for every byte that is not part of valid UTF-8.
func AppendQuotedBody(dst, s []byte) []byte {
	dst, _ = appendEscaped(dst, s, false)
	return dst
}

// appendEscaped escapes s into dst as AppendQuotedBody does, up to its end
// or, with toNewline, up to its first '\n', whose index it returns (-1 when
// there is none: dst then holds the whole of s escaped). The newline is a
// control byte: the one look for bytes to escape (firstSpecial, 16 bytes a
// step) finds the end of a plain line too, and runs of plain bytes are
// copied in one piece.
func appendEscaped(dst, s []byte, toNewline bool) ([]byte, int) {
	run, i := 0, firstSpecial(s) // run: the start of the plain bytes not yet copied
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == '\n' && toNewline {
				return append(dst, s[run:i]...), i
			}
			dst = append(dst, s[run:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			run = i
		} else if r, size := utf8.DecodeRune(s[i:]); r == utf8.RuneError && size == 1 {
			dst = append(dst, s[run:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			run = i
		} else {
			i += size // a valid rune stays in the run
		}
		// the next special byte is often close by in text that has one
		// (JSON): the next bytes are looked at one by one first
		end := min(i+16, len(s))
		for i < end && safeByte[s[i]] {
			i++
		}
		if i == end {
			i += firstSpecial(s[i:])
		}
	}
	return append(dst, s[run:]...), -1
}

// firstSpecial returns the index of the first byte of s that is not plain
// printable ASCII (a control byte, '"', '\\', DEL or a byte >= 0x80), or
// len(s). The whole blocks of 16 bytes are looked at by blockSpecial (SSE2
// on amd64), the rest one byte at a time.
func firstSpecial(s []byte) int {
	i := blockSpecial(s)
	for ; i < len(s); i++ {
		if !safeByte[s[i]] {
			return i
		}
	}
	return len(s)
}

// blockSpecialSWAR is blockSpecial in plain Go, 8 bytes a word (see
// special): the index of the first special byte within the whole 16-byte
// blocks of s, or where those blocks end (len(s) rounded down to 16).
func blockSpecialSWAR(s []byte) int {
	n := len(s)
	for len(s) >= 16 {
		a := special(binary.LittleEndian.Uint64(s[:8]))
		b := special(binary.LittleEndian.Uint64(s[8:16]))
		if a|b != 0 {
			if a != 0 {
				return n - len(s) + bits.TrailingZeros64(a)>>3
			}
			return n - len(s) + 8 + bits.TrailingZeros64(b)>>3
		}
		s = s[16:]
	}
	return n - len(s)
}

// AppendLines appends, as AppendLine does, every complete line of buf up
// to the first one longer than max bytes: each byte is looked at once, to
// find both the line's end and what needs escaping. It returns how many
// bytes of buf it consumed (through the last newline it encoded) and how
// many lines it appended; the rest (an unfinished line, or one longer than
// max, for the caller to cut) is left.
func (f *LineFormat) AppendLines(dst, ts []byte, lvl Level, buf []byte, max int) (out []byte, consumed, lines int) {
	if lvl >= numLevels {
		lvl = Info
	}
	head := f.head[lvl]
	for consumed < len(buf) {
		mark := len(dst)
		dst = append(dst, "ts="...)
		dst = append(dst, ts...)
		dst = append(dst, head...)
		var nl int
		dst, nl = appendEscaped(dst, buf[consumed:], true)
		if nl < 0 || nl > max {
			return dst[:mark], consumed, lines
		}
		dst = append(dst, f.tail...)
		consumed += nl + 1
		lines++
	}
	return dst, consumed, lines
}

// AppendValue appends v as a logfmt value, quoted only when it must be
// (empty, or holding a space, '=', '"', a control byte or invalid UTF-8).
func AppendValue(dst []byte, v string) []byte {
	if needsQuote(v) {
		dst = append(dst, '"')
		dst = AppendQuotedBody(dst, []byte(v))
		return append(dst, '"')
	}
	return append(dst, v...)
}

func needsQuote(v string) bool {
	if v == "" {
		return true
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c == '=' || c == '"' || c == '\\' || c >= utf8.RuneSelf || c == 0x7f {
			return true
		}
	}
	return false
}

// AppendKey appends k as a logfmt key, replacing what a key may not hold
// (space, '=', '"', control bytes, invalid UTF-8) with '_'.
func AppendKey(dst []byte, k string) []byte {
	if k == "" {
		return append(dst, '_')
	}
	for _, r := range k {
		if r <= ' ' || r == '=' || r == '"' || r == utf8.RuneError || r == 0x7f {
			dst = append(dst, '_')
			continue
		}
		dst = utf8.AppendRune(dst, r)
	}
	return dst
}

// Clock formats timestamps and reuses the text within one millisecond. A
// Clock is owned by one goroutine.
type Clock struct {
	ms  int64
	buf []byte
}

// Format returns now as RFC3339 with milliseconds in UTC. The returned slice is
// valid until the next call.
func (c *Clock) Format(now time.Time) []byte {
	ms := now.UnixMilli()
	if ms != c.ms || c.buf == nil {
		c.ms = ms
		c.buf = appendTimestamp(c.buf[:0], now)
	}
	return c.buf
}

// appendTimestamp appends t as time's "2006-01-02T15:04:05.000Z07:00" in
// UTC does, digit by digit: time.AppendFormat's frame is large, and every
// process's goroutine formats a timestamp when it logs, which would grow
// each of their stacks past 4 KiB for good.
func appendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	}
	hour, min, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, min, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/1e6, 3)
	return append(b, 'Z')
}

// appendDigits appends the n lowest decimal digits of v (v >= 0).
func appendDigits(b []byte, v, n int) []byte {
	var d [4]byte
	for i := n - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, d[:n]...)
}
