package supervisor

import (
	"syscall"
	"time"

	"github.com/process-wrapper/process-wrapper/wrapper/reaper"
)

// leftovers are the process groups of a run whose main pid has ended while
// other members remain (a background job of a shell, a worker that
// outlived its master). They never decide the exit code: they are stopped
// before the next run starts, or, for a process that has ended for good,
// at the shutdown, and before the wrapper exits.
type leftovers struct {
	process string
	pgids   []int
	sig     syscall.Signal // the process's stop signal
}

// leftoverPoll re-checks groups that may have emptied without the wrapper
// reaping anything (a member reaped by a parent outside the group).
const leftoverPoll = 250 * time.Millisecond

// killWait bounds the wait for a group after its SIGKILL (a member in
// uninterruptible sleep): the wrapper's exit stays within the deadline
// plus about a second.
const killWait = 500 * time.Millisecond

// alive returns those of pgids that still have a member.
func (s *Supervisor) alive(pgids []int) []int {
	var left []int
	for _, pg := range pgids {
		if ok, _ := s.opt.Reaper.SignalGroup(pg, 0); ok {
			left = append(left, pg)
		}
	}
	return left
}

// stopGroups sends sig, then SIGCONT (so that a member stopped by a signal
// can act on it), to each of l's groups that still has members, and
// returns those.
func (s *Supervisor) stopGroups(l leftovers) []int {
	var left []int
	for _, pg := range l.pgids {
		ok, err := s.opt.Reaper.SignalGroup(pg, l.sig)
		if err != nil {
			s.opt.Log.Warn("cannot signal what the process left behind", "process", l.process, "pgid", pg, "err", err)
		}
		if !ok {
			continue
		}
		if contAfter(l.sig) {
			_, _ = s.opt.Reaper.SignalGroup(pg, syscall.SIGCONT)
		}
		left = append(left, pg)
	}
	return left
}

// contAfter reports whether a stop signal is followed by SIGCONT, as
// systemd does: a process stopped by a signal acts on its stop signal only
// once continued.
func contAfter(sig syscall.Signal) bool { return sig != syscall.SIGCONT && sig != syscall.SIGKILL }

// awaitGroups waits until every group of l is empty; when grace or the
// shutdown deadline comes first, what is left gets SIGKILL and a last
// bounded wait.
func (s *Supervisor) awaitGroups(l leftovers, grace <-chan time.Time) {
	poll := time.NewTicker(leftoverPoll)
	defer poll.Stop()
	for {
		reaped := s.opt.Reaper.OrphanReaped()
		left := s.alive(l.pgids)
		if len(left) == 0 {
			return
		}
		l.pgids = left
		select {
		case <-reaped:
			continue
		case <-poll.C:
			continue
		case <-grace:
		case <-s.kill:
		}
		break
	}
	members := 0
	for _, pg := range l.pgids {
		members += len(reaper.GroupMembers(pg))
		_, _ = s.opt.Reaper.SignalGroup(pg, syscall.SIGKILL)
	}
	s.opt.Log.Warn("deadline reached: killing what the process left in its process group", "process", l.process, "processes", members)
	bound := time.NewTimer(killWait)
	defer bound.Stop()
	for {
		reaped := s.opt.Reaper.OrphanReaped()
		if l.pgids = s.alive(l.pgids); len(l.pgids) == 0 {
			return
		}
		select {
		case <-reaped:
		case <-poll.C:
		case <-bound.C:
			return
		}
	}
}

// keep records the leftovers of a process that ended for good, to be
// stopped at the shutdown (at once if it has begun).
func (s *Supervisor) keep(l leftovers) {
	s.mu.Lock()
	s.kept = append(s.kept, l)
	stopping := s.stopped
	s.mu.Unlock()
	if stopping {
		s.stopGroups(l)
	}
}

// endKept stops the leftovers of the processes that ended for good, once
// every runner has returned: the wrapper does not exit before them. When
// the shutdown has not signalled them, they get their stop signal now and
// the deadline counts from here.
func (s *Supervisor) endKept() {
	s.mu.Lock()
	kept, stopping := s.kept, s.stopped
	s.mu.Unlock()
	if len(kept) == 0 {
		return
	}
	var grace <-chan time.Time
	if !stopping {
		for _, l := range kept {
			s.stopGroups(l)
		}
		t := time.NewTimer(s.opt.Deadline)
		defer t.Stop()
		grace = t.C
	}
	for _, l := range kept {
		s.awaitGroups(l, grace)
	}
}
