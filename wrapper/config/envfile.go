package config

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ReadEnvFile reads KEY=VALUE lines: blank lines and lines starting with '#'
// are skipped, an "export " prefix is allowed, a value may be wrapped in
// double quotes (with \n, \t, \", \\ escapes) or single quotes (literal);
// an unquoted value is taken as written, '#' included. Errors name the file
// and the line.
func ReadEnvFile(path string) ([]KV, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("env file: %w", err)
	}
	defer f.Close()
	var out []KV
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		kv, ok, err := parseEnvLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("env file %s:%d: %w", path, n, err)
		}
		if ok {
			kv.Line = n
			out = append(out, kv)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("env file %s: %w", path, err)
	}
	return out, nil
}

func parseEnvLine(line string) (KV, bool, error) {
	s := strings.TrimSpace(line)
	if s == "" || s[0] == '#' {
		return KV{}, false, nil
	}
	s = strings.TrimPrefix(s, "export ")
	key, val, ok := strings.Cut(s, "=")
	if !ok {
		return KV{}, false, fmt.Errorf("expected KEY=VALUE, got %q", line)
	}
	key = strings.TrimSpace(key)
	if err := checkEnvName(key); err != nil {
		return KV{}, false, err
	}
	val = strings.TrimSpace(val)
	if len(val) >= 1 && (val[0] == '"' || val[0] == '\'') {
		q := val[0]
		if len(val) < 2 || val[len(val)-1] != q {
			return KV{}, false, fmt.Errorf("value of %s: unterminated %c quote", key, q)
		}
		if q == '"' {
			u, err := strconv.Unquote(val)
			if err != nil {
				return KV{}, false, fmt.Errorf("value of %s: bad escape in double quotes: %w", key, err)
			}
			val = u
		} else {
			val = val[1 : len(val)-1]
		}
	}
	if strings.IndexByte(val, 0) >= 0 {
		return KV{}, false, fmt.Errorf("value of %s holds a NUL byte, which no environment can carry", key)
	}
	return KV{Key: key, Value: val}, true, nil
}
