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

// plain reports whether the 8 bytes of w are all printable ASCII other than
// '"' and '\\' (bytes 0x20..0x7e without 0x22 and 0x5c), the common case.
func plain(w uint64) bool {
	ctl := (w - 0x20*ones) &^ w // high bit set where byte < 0x20 (or >= 0x80, caught below)
	del := w ^ (0x7f * ones)
	del = (del - ones) &^ del // high bit where byte == DEL
	q := w ^ ('"' * ones)
	q = (q - ones) &^ q // high bit where byte == '"'
	b := w ^ ('\\' * ones)
	b = (b - ones) &^ b // high bit where byte == '\\'
	return (ctl|del|q|b|w)&highs == 0
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
// \ufffd for every byte that is not part of valid UTF-8. A run of 8 plain
// bytes is checked with one word operation.
func AppendQuotedBody(dst, s []byte) []byte {
	start := 0
	i := 0
	for i < len(s) {
		end := len(s)
		if i+8 <= len(s) {
			if plain(binary.LittleEndian.Uint64(s[i:])) {
				i += 8
				continue
			}
			end = i + 8 // look at these 8 bytes one by one, then try words again
		}
		for i < end {
			c := s[i]
			if safeByte[c] {
				i++
				continue
			}
			if c < utf8.RuneSelf {
				dst = append(dst, s[start:i]...)
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
				start = i
				continue
			}
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\ufffd`...)
				start = i + 1
			}
			i += size
		}
	}
	return append(dst, s[start:]...)
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
		c.buf = now.UTC().AppendFormat(c.buf[:0], "2006-01-02T15:04:05.000Z07:00")
	}
	return c.buf
}
