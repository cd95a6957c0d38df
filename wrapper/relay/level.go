package relay

import (
	"bytes"

	"github.com/go-logfmt/logfmt"
	"github.com/process-wrapper/process-wrapper/internal/logline"
)

// DetectLevel reads the severity a line gives itself, for LOG_FORMAT=auto:
// a JSON "level"/"severity"/"lvl" field, a logfmt level=/lvl=/severity= pair,
// a klog/glog header (E1125 ...), or an upper-case word such as ERROR, WARN,
// WARNING, FATAL, DEBUG, INFO near the start of the line.
func DetectLevel(line []byte) (logline.Level, bool) {
	s := bytes.TrimLeft(line, " \t")
	if len(s) == 0 {
		return 0, false
	}
	if s[0] == '{' {
		for _, key := range jsonKeys {
			if v, ok := jsonString(s, key); ok {
				return levelOf(v)
			}
		}
		return 0, false
	}
	if bytes.Contains(s, []byte("level=")) || bytes.Contains(s, []byte("lvl=")) || bytes.Contains(s, []byte("severity=")) {
		if lvl, ok := logfmtLevel(s); ok {
			return lvl, true
		}
	}
	if lvl, ok := klogLevel(s); ok {
		return lvl, true
	}
	return wordLevel(s)
}

var jsonKeys = [][]byte{[]byte(`"level"`), []byte(`"severity"`), []byte(`"lvl"`)}

// jsonString finds "key": "value" in a JSON object line without decoding the
// whole object.
func jsonString(s, key []byte) ([]byte, bool) {
	i := bytes.Index(s, key)
	if i < 0 {
		return nil, false
	}
	rest := bytes.TrimLeft(s[i+len(key):], " \t")
	if len(rest) == 0 || rest[0] != ':' {
		return nil, false
	}
	rest = bytes.TrimLeft(rest[1:], " \t")
	if len(rest) == 0 || rest[0] != '"' {
		return nil, false
	}
	end := bytes.IndexByte(rest[1:], '"')
	if end < 0 {
		return nil, false
	}
	return rest[1 : 1+end], true
}

func logfmtLevel(s []byte) (logline.Level, bool) {
	d := logfmt.NewDecoder(bytes.NewReader(s))
	if !d.ScanRecord() {
		return 0, false
	}
	for d.ScanKeyval() {
		switch string(d.Key()) {
		case "level", "lvl", "severity":
			return levelOf(d.Value())
		}
	}
	return 0, false
}

// klogLevel reads the header of klog/glog lines: "E1125 10:00:00.000000 ...".
func klogLevel(s []byte) (logline.Level, bool) {
	if len(s) < 6 || s[5] != ' ' {
		return 0, false
	}
	for _, c := range s[1:5] {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	switch s[0] {
	case 'I':
		return logline.Info, true
	case 'W':
		return logline.Warn, true
	case 'E', 'F':
		return logline.Error, true
	}
	return 0, false
}

const wordScan = 256

// wordLevel finds the first upper-case severity word (bounded by non-letters)
// in the first bytes of the line.
func wordLevel(s []byte) (logline.Level, bool) {
	if len(s) > wordScan {
		s = s[:wordScan]
	}
	for i := 0; i < len(s); {
		if s[i] < 'A' || s[i] > 'Z' || (i > 0 && isLetter(s[i-1])) {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] >= 'A' && s[j] <= 'Z' {
			j++
		}
		if j == len(s) || !isLetter(s[j]) {
			if lvl, ok := levelOf(s[i:j]); ok {
				return lvl, true
			}
		}
		i = j
	}
	return 0, false
}

func isLetter(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

func levelOf(v []byte) (logline.Level, bool) {
	switch string(bytes.ToLower(v)) {
	case "error", "err", "fatal", "panic", "critical", "crit", "alert", "emerg", "emergency", "severe", "dpanic":
		return logline.Error, true
	case "warn", "warning":
		return logline.Warn, true
	case "debug", "trace", "dbug", "trce":
		return logline.Debug, true
	case "info", "notice", "information", "informational":
		return logline.Info, true
	}
	return 0, false
}
