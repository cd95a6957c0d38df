// Package secret reads secrets (tokens, URLs with a password) from files:
// a mounted Secret keeps them out of /proc/PID/cmdline and the environment.
package secret

import (
	"fmt"
	"os"
	"strings"
)

// Read reads the secret in the file at path, which what names (a flag or
// a variable), without the spaces around it. A file that is there but
// empty is an error: a secret fails closed.
func Read(what, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s %s is empty", what, path)
	}
	return s, nil
}
