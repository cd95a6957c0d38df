package config

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// LookupEnv returns the value of key in env (KEY=VALUE entries, the last wins).
func LookupEnv(env []string, key string) string {
	v, _ := LookupEnvOK(env, key)
	return v
}

// LookupEnvOK returns the value of key in env and whether it is set.
func LookupEnvOK(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// LookPath finds the program as a shell does, in the child's PATH (not the
// wrapper's), inside chroot when one is set.
func LookPath(file, pathEnv, chroot string) (string, error) {
	if strings.Contains(file, "/") {
		if err := executable(filepath.Join(chroot, file)); err != nil {
			return "", fmt.Errorf("exec %q: %w", file, err)
		}
		return file, nil
	}
	if pathEnv == "" {
		pathEnv = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if err := executable(filepath.Join(chroot, p)); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %q: %w in PATH %s", file, exec.ErrNotFound, pathEnv)
}

func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fs.ErrPermission
	}
	return nil
}

// Locate finds what a start of p needs on the host: its chroot (checked at
// each start, not at load: a one-shot step that runs earlier may make it),
// its program (the path of name in env's PATH, inside the chroot) and its
// working directory.
func (p *Process) Locate(name string, env []string) (string, error) {
	if p.Chroot != "" {
		if fi, err := os.Stat(p.Chroot); err != nil {
			return "", fmt.Errorf("chroot: %w", err)
		} else if !fi.IsDir() {
			return "", fmt.Errorf("chroot %s: not a directory", p.Chroot)
		}
	}
	path, err := LookPath(name, LookupEnv(env, "PATH"), p.Chroot)
	if err != nil {
		if p.Chroot != "" {
			err = fmt.Errorf("%w (inside chroot %s)", err, p.Chroot)
		}
		return "", err
	}
	if p.WorkingDir != "" {
		if _, err := os.Stat(filepath.Join(p.Chroot, p.WorkingDir)); err != nil {
			return "", fmt.Errorf("workingDir: %w", err)
		}
	}
	return path, nil
}
