package app

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ensureEmptySigmask re-executes the wrapper with an empty signal mask when
// it was started with signals blocked. A Go program cannot clear the mask of
// its threads after the runtime started them, and a forked child restores the
// mask of the thread it was forked from: without this, a signal blocked by
// whoever started the wrapper would stay blocked in every child. It returns
// only when the mask is already empty or the re-exec failed.
func ensureEmptySigmask() error {
	blocked, err := blockedSignals()
	if err != nil || blocked == 0 {
		return err
	}
	runtime.LockOSThread()
	var empty unix.Sigset_t
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &empty, nil); err != nil {
		return fmt.Errorf("clear signal mask: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("re-exec with an empty signal mask: %w", err)
	}
	err = syscall.Exec(exe, os.Args, os.Environ())
	return fmt.Errorf("re-exec with an empty signal mask: %w", err)
}

func blockedSignals() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "SigBlk:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, sc.Err()
}
