package app

import (
	"fmt"
	"os"
	"runtime"
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

// blockedSignals returns the signals the calling thread blocks. Every
// thread of the runtime blocks what the wrapper was started with, minus the
// signals the runtime needs (it unblocks those in each thread it starts), so
// any thread tells; asking costs one system call where reading SigBlk from
// /proc/self/status cost a quarter of a millisecond of start-up.
func blockedSignals() (uint64, error) {
	var cur unix.Sigset_t
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, nil, &cur); err != nil {
		return 0, fmt.Errorf("read the signal mask: %w", err)
	}
	return cur.Val[0], nil
}
