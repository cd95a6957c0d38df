package config

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

var signalNames = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "ILL": syscall.SIGILL,
	"TRAP": syscall.SIGTRAP, "ABRT": syscall.SIGABRT, "IOT": syscall.SIGIOT, "BUS": syscall.SIGBUS,
	"FPE": syscall.SIGFPE, "KILL": syscall.SIGKILL, "USR1": syscall.SIGUSR1, "SEGV": syscall.SIGSEGV,
	"USR2": syscall.SIGUSR2, "PIPE": syscall.SIGPIPE, "ALRM": syscall.SIGALRM, "TERM": syscall.SIGTERM,
	"STKFLT": syscall.SIGSTKFLT, "CHLD": syscall.SIGCHLD, "CONT": syscall.SIGCONT, "STOP": syscall.SIGSTOP,
	"TSTP": syscall.SIGTSTP, "TTIN": syscall.SIGTTIN, "TTOU": syscall.SIGTTOU, "URG": syscall.SIGURG,
	"XCPU": syscall.SIGXCPU, "XFSZ": syscall.SIGXFSZ, "VTALRM": syscall.SIGVTALRM, "PROF": syscall.SIGPROF,
	"WINCH": syscall.SIGWINCH, "IO": syscall.SIGIO, "POLL": syscall.SIGIO, "PWR": syscall.SIGPWR, "SYS": syscall.SIGSYS,
}

// SignalName returns the name of sig as Kubernetes writes it (SIGTERM).
func SignalName(sig syscall.Signal) string {
	best := ""
	for name, s := range signalNames {
		if s == sig && (best == "" || name < best) {
			best = name // IOT/ABRT and IO/POLL share a number: take one name always
		}
	}
	if best == "" {
		return fmt.Sprintf("SIG%d", int(sig))
	}
	return "SIG" + best
}

const sigRTMIN, sigRTMAX = 34, 64

// ParseSignal reads a signal as Kubernetes' lifecycle.stopSignal writes it
// (SIGTERM), without the SIG prefix (TERM), as a number (15) or as a
// real-time signal (SIGRTMIN+3, SIGRTMAX-1).
func ParseSignal(s string) (syscall.Signal, error) {
	name := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "SIG")
	if sig, ok := signalNames[name]; ok {
		return sig, nil
	}
	if n, err := strconv.Atoi(name); err == nil && n > 0 && n <= sigRTMAX {
		return syscall.Signal(n), nil
	}
	for base, v := range map[string]int{"RTMIN": sigRTMIN, "RTMAX": sigRTMAX} {
		if rest, ok := strings.CutPrefix(name, base); ok {
			off := 0
			if rest != "" {
				var err error
				if off, err = strconv.Atoi(rest); err != nil {
					break
				}
			}
			if n := v + off; n >= sigRTMIN && n <= sigRTMAX {
				return syscall.Signal(n), nil
			}
		}
	}
	return 0, fmt.Errorf("unknown signal %q (use a name such as SIGTERM, SIGQUIT, SIGINT, or a number)", s)
}
