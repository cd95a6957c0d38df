package control

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenUnix listens on the filesystem socket path (never an abstract one:
// those ignore permissions, and every container of a pod shares the
// network namespace). Its directory is made, or taken if it is the
// wrapper's own, with mode 0700; the socket gets mode 0600. A socket left
// by an earlier run is replaced; anything else at path is an error.
func ListenUnix(path string) (net.Listener, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("-control-socket %q: want an absolute path", path)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return nil, fmt.Errorf("%s is not a directory (a symbolic link is refused)", dir)
	case int(st.Uid) != os.Getuid():
		return nil, fmt.Errorf("%s belongs to uid %d, not to the wrapper's uid %d: its permissions are not the wrapper's to decide", dir, st.Uid, os.Getuid())
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, err
		}
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		// a socket nobody answers on: an earlier run's (this directory
		// is the wrapper's uid's alone)
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another wrapper answers on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// the directory (0700) keeps others out already; the socket's own
	// mode says it again
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// peer is the process at the other end of a unix socket (SO_PEERCRED).
type peer struct {
	uid, pid int
	comm     string
}

type peerKey struct{}

// peerContext keeps the credentials of a unix socket's peer in the
// context of the connection's requests.
func peerContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil || cerr != nil {
		return ctx
	}
	p := peer{uid: int(cred.Uid), pid: int(cred.Pid)}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cred.Pid)); err == nil {
		p.comm = strings.TrimSpace(string(b))
	}
	return context.WithValue(ctx, peerKey{}, p)
}

// allowed: root, or the wrapper's own uid.
func (p peer) allowed() error {
	if p.uid == 0 || p.uid == os.Getuid() {
		return nil
	}
	return fmt.Errorf("uid %d may not use the control API: only root and the wrapper's uid %d", p.uid, os.Getuid())
}

func (p peer) String() string {
	if p.comm == "" {
		return fmt.Sprintf("uid %d pid %d", p.uid, p.pid)
	}
	return fmt.Sprintf("uid %d pid %d (%s)", p.uid, p.pid, p.comm)
}
