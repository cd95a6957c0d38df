package logline

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logfmt/logfmt"
)

// Logger writes a program's own messages in the line shape of this package,
// with app=<name> and no stream, followed by key/value pairs encoded by
// go-logfmt. It is safe for concurrent use.
type Logger struct {
	out    *Output
	format *LineFormat
	debug  atomic.Bool
	now    func() time.Time
	q      atomic.Pointer[queue] // set by Async
}

// NewLogger returns a logger for app writing to out.
func NewLogger(out *Output, app string) *Logger {
	return &Logger{out: out, format: NewLineFormat(app, "", nil), now: time.Now}
}

// SetDebug turns debug messages on or off.
func (l *Logger) SetDebug(on bool) { l.debug.Store(on) }

// DebugEnabled reports whether debug messages are written.
func (l *Logger) DebugEnabled() bool { return l.debug.Load() }

// Debug logs msg at level debug when debug is on.
func (l *Logger) Debug(msg string, kv ...any) {
	if l.debug.Load() {
		l.log(Debug, msg, kv)
	}
}

// Info logs msg at level info.
func (l *Logger) Info(msg string, kv ...any) { l.log(Info, msg, kv) }

// Warn logs msg at level warn.
func (l *Logger) Warn(msg string, kv ...any) { l.log(Warn, msg, kv) }

// Error logs msg at level error.
func (l *Logger) Error(msg string, kv ...any) { l.log(Error, msg, kv) }

// Always logs msg at level info, and while the output is blocked it is
// never one of the lines dropped (see Async): for the lines a reader of the
// log must always find ("shutting down", "exiting").
func (l *Logger) Always(msg string, kv ...any) { l.emit(l.line(Info, msg, kv), true) }

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

func (l *Logger) log(lvl Level, msg string, kv []any) { l.emit(l.line(lvl, msg, kv), false) }

// emit writes a line, or queues it once Async was called.
func (l *Logger) emit(line []byte, keep bool) {
	if q := l.q.Load(); q != nil {
		q.push(line, keep)
		return
	}
	_, _ = l.out.Write(line)
}

// line encodes one line of the logger's.
func (l *Logger) line(lvl Level, msg string, kv []any) []byte {
	var c Clock
	line := l.format.AppendLine(make([]byte, 0, 256), c.Format(l.now()), lvl, []byte(msg), false)
	if len(kv) > 0 {
		// the tail ends in '\n': put the pairs before it.
		w := &sliceWriter{b: append(line[:len(line)-1], ' ')}
		enc := logfmt.NewEncoder(w)
		for i := 0; i < len(kv); i += 2 {
			var v any = "(missing)"
			if i+1 < len(kv) {
				v = kv[i+1]
			}
			if err := enc.EncodeKeyval(kv[i], v); err != nil {
				// a value go-logfmt cannot encode (a struct, a map) is
				// written as its fmt text, so a message is never lost.
				_ = enc.EncodeKeyval(fmt.Sprint(kv[i]), fmt.Sprint(v))
			}
		}
		line = append(w.b, '\n')
	}
	return line
}
