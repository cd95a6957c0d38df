// Package relay turns a child's stdout or stderr into lines on the wrapper's
// single output: logfmt lines (LOG_FORMAT=logfmt), the child's own lines
// untouched (free), or logfmt lines whose level comes from the line (auto).
//
// A relay reads what the pipe holds (up to readSize at a time), encodes every
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
	"sync"
	"time"
	"unicode/utf8"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/wrapper/tail"
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

// readSize is what one read takes: half of a grown pipe (ChildPipeSize),
// twice a pipe's default capacity. Against 64 KiB, it cut the wrapper's
// CPU for 3M lines from cat by 7 % (4 writers: a fifth), and a quiet
// process's line waits for at most one such read and write of each busy
// one.
const readSize = 128 << 10

// The read and write buffers are taken from these pools when a pipe has
// data and given back as soon as it has none, so that an idle stream holds
// no buffer: a thousand quiet children cost no more than the few that log.
var (
	readBufs  = sync.Pool{New: func() any { b := make([]byte, readSize); return &b }}
	writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2*readSize); return &b }}
)

// Source is one stream of one process.
type Source struct {
	Format   Format
	Line     *logline.LineFormat
	Level    logline.Level // the level of a line in logfmt format, and in auto when the line names none
	Out      *logline.Output
	MaxLine  int              // 0: logline.MaxLine
	Now      func() time.Time // nil: time.Now
	Observed func(lines int)  // optional: called after each write with the count of lines written
	Tap      *tail.Tail       // optional: keeps the last lines written, for ctl logs
}

// Run relays r until it returns EOF or an error (such as a read deadline set
// by the owner to bound the drain), and writes a last line that lacks its
// newline. It returns the number of lines written. It holds a buffer
// while it waits: the processes' pipes are relayed by a Poller, which does
// not.
func (s *Source) Run(r io.Reader) (lines int, err error) {
	in := newInput(r, s.limit())
	defer in.putBack()
	var clock logline.Clock
	for {
		n, rerr := in.read()
		if n == 0 && rerr == nil {
			continue
		}
		k, werr := s.step(in, &clock, rerr)
		lines += k
		if err == nil {
			err = werr
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, os.ErrClosed) {
				return lines, err
			}
			return lines, errors.Join(err, rerr)
		}
	}
}

func (s *Source) limit() int {
	if s.MaxLine <= 0 {
		return logline.MaxLine
	}
	return s.MaxLine
}

// step relays what in holds after a read: every complete line (cut when
// longer than the limit) and, when the read ended the stream (rerr), the
// unfinished rest as a last line. It returns the lines written and the
// first write error.
func (s *Source) step(in *input, clock *logline.Clock, rerr error) (lines int, err error) {
	now := s.Now
	if now == nil {
		now = time.Now
	}
	limit := in.limit
	buf := in.buf[in.start:in.end]
	ts := clock.Format(now())
	var out []byte
	var ob *[]byte
	if s.Format == Free && len(buf) <= limit {
		// whole lines go out as they came, from the read buffer itself
		if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
			out = buf[:i+1]
			in.start += i + 1
			count := bytes.Count(out, newline)
			err = s.write(out, count, err)
			lines += count
		}
	} else {
		ob = writeBufs.Get().(*[]byte)
		out = (*ob)[:0]
		count := 0
		out, count = s.encode(out, ts, in, limit)
		if len(out) > 0 {
			err = s.write(out, count, err)
			lines += count
		}
	}
	if rerr != nil && in.end > in.start {
		// the stream ended inside a line: it goes out as it is
		if ob == nil {
			ob = writeBufs.Get().(*[]byte)
		}
		out = s.appendLine((*ob)[:0], ts, in.buf[in.start:in.end], false)
		err = s.write(out, 1, err)
		lines++
		in.start = in.end
	}
	if ob != nil && cap(out) <= 4*readSize {
		*ob = out[:0]
		writeBufs.Put(ob)
	}
	return lines, err
}

var newline = []byte{'\n'}

// write writes out, which holds count lines, and keeps the first error.
func (s *Source) write(out []byte, count int, err error) error {
	if _, werr := s.Out.Write(out); werr != nil && err == nil {
		err = fmt.Errorf("write: %w", werr)
	}
	if s.Tap != nil {
		s.Tap.Write(out)
	}
	if s.Observed != nil {
		s.Observed(count)
	}
	return err
}

// encode appends every complete line of what in holds, and the pieces of a
// line longer than limit (cut at a rune boundary and marked partial), and
// consumes them from in.
func (s *Source) encode(out, ts []byte, in *input, limit int) ([]byte, int) {
	count := 0
	for {
		buf := in.buf[in.start:in.end]
		if s.Format == Logfmt && (len(buf) <= readSize || bytes.IndexByte(buf, '\n') >= 0) {
			// one pass over each byte; a long unfinished line is only
			// searched for its newline until it has one
			var n, k int
			out, n, k = s.Line.AppendLines(out, ts, s.Level, buf, limit)
			in.start += n
			count += k
			buf = buf[n:]
		} else {
			for {
				i := bytes.IndexByte(buf, '\n')
				if i < 0 || i > limit {
					break
				}
				out = s.appendLine(out, ts, buf[:i], false)
				count++
				in.start += i + 1
				buf = buf[i+1:]
			}
		}
		if len(buf) <= limit {
			return out, count
		}
		// a line longer than max: cut it at a rune boundary and mark it.
		cut := runeCut(buf, limit)
		out = s.appendLine(out, ts, buf[:cut], true)
		count++
		in.start += cut
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
