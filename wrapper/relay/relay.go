// Package relay turns a child's stdout or stderr into lines on the wrapper's
// single output: logfmt lines (LOG_FORMAT=logfmt), the child's own lines
// untouched (free), or logfmt lines whose level comes from the line (auto).
//
// A relay reads what the pipe holds (up to 64 KiB at a time), encodes every
// complete line of it into one buffer and writes that buffer with one write:
// under load one write carries hundreds of lines, and when the child is quiet
// each line is written as soon as its newline is read, never held back for
// the next one. The write blocks while the wrapper's stdout blocks, so a slow
// reader of the wrapper's output slows the child down (its pipe fills and its
// writes block) instead of losing lines.
package relay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/process-wrapper/process-wrapper/internal/logline"
)

// Format is the LOG_FORMAT of the wrapper.
type Format int

// The log formats of SPEC.md.
const (
	Logfmt Format = iota
	Free
	Auto
)

// ParseFormat reads LOG_FORMAT; empty means logfmt.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "logfmt":
		return Logfmt, nil
	case "free":
		return Free, nil
	case "auto":
		return Auto, nil
	}
	return Logfmt, fmt.Errorf("LOG_FORMAT: unknown format %q (logfmt, free or auto)", s)
}

const readSize = 64 << 10

// Source is one stream of one process.
type Source struct {
	Format   Format
	Line     *logline.LineFormat
	Level    logline.Level // the level of a line in logfmt format, and in auto when the line names none
	Out      *logline.Output
	MaxLine  int              // 0: logline.MaxLine
	Now      func() time.Time // nil: time.Now
	Observed func(lines int)  // optional: called after each write with the count of lines written
}

// Run relays r until it returns EOF or an error (such as a read deadline set
// by the owner to bound the drain), and writes a last line that lacks its
// newline. It returns the number of lines written.
func (s *Source) Run(r io.Reader) (lines int, err error) {
	limit := s.MaxLine
	if limit <= 0 {
		limit = logline.MaxLine
	}
	now := s.Now
	if now == nil {
		now = time.Now
	}
	var clock logline.Clock
	buf := make([]byte, readSize)
	out := make([]byte, 0, readSize*2)
	start, end := 0, 0
	for {
		if end == len(buf) {
			// no room left: move the unfinished line to the front, or grow
			// the buffer while the line is shorter than max.
			if start > 0 {
				end = copy(buf, buf[start:end])
				start = 0
			} else {
				nb := make([]byte, max(min(2*len(buf), limit+1), len(buf)+1))
				end = copy(nb, buf[:end])
				buf = nb
			}
		}
		n, rerr := r.Read(buf[end:])
		end += n
		ts := clock.Format(now())
		out = out[:0]
		count := 0
		for start < end {
			i := bytes.IndexByte(buf[start:end], '\n')
			if i < 0 {
				break
			}
			line := buf[start : start+i]
			for len(line) > limit {
				cut := runeCut(line, limit)
				out = s.appendLine(out, ts, line[:cut], true)
				count++
				line = line[cut:]
			}
			out = s.appendLine(out, ts, line, false)
			count++
			start += i + 1
		}
		// a line longer than max: cut it at a rune boundary and mark it.
		for end-start > limit {
			cut := runeCut(buf[start:end], limit)
			out = s.appendLine(out, ts, buf[start:start+cut], true)
			count++
			start += cut
		}
		if rerr != nil && end > start {
			out = s.appendLine(out, ts, buf[start:end], false)
			count++
			start = end
		}
		if len(out) > 0 {
			if _, werr := s.Out.Write(out); werr != nil && err == nil {
				err = fmt.Errorf("write: %w", werr)
			}
			lines += count
			if s.Observed != nil {
				s.Observed(count)
			}
		}
		if start == end {
			start, end = 0, 0
			if len(buf) > readSize {
				buf = make([]byte, readSize) // give back what a long line took
			}
		}
		if cap(out) > 4*readSize {
			out = make([]byte, 0, readSize*2)
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, os.ErrClosed) {
				return lines, err
			}
			return lines, errors.Join(err, rerr)
		}
	}
}

// runeCut returns where to cut b (longer than max) at most max bytes in,
// backing off so as not to split a UTF-8 sequence.
func runeCut(b []byte, max int) int {
	cut := max
	for i := 0; i < utf8.UTFMax-1 && cut > 1 && !utf8.RuneStart(b[cut]); i++ {
		cut--
	}
	if !utf8.RuneStart(b[cut]) {
		return max // not UTF-8 anyway: cut where the limit is
	}
	return cut
}

func (s *Source) appendLine(out, ts, line []byte, partial bool) []byte {
	switch s.Format {
	case Free:
		out = append(out, line...)
		return append(out, '\n')
	case Auto:
		lvl, ok := DetectLevel(line)
		if !ok {
			lvl = s.Level
		}
		return s.Line.AppendLine(out, ts, lvl, line, partial)
	}
	return s.Line.AppendLine(out, ts, s.Level, line, partial)
}
