package config

import (
	"time"

	"gopkg.in/yaml.v3"
)

// HoldUntil says when a process gives its shared lock back.
type HoldUntil string

// The moments a shared lock is released. Only Exit makes the runs of the
// process exclusive across the fleet; Started and Ready only serialise
// their start-up.
const (
	HoldUntilStarted HoldUntil = "started"
	HoldUntilReady   HoldUntil = "ready"
	HoldUntilExit    HoldUntil = "exit"
)

// SharedLock is a process's lock on the shared-lock server.
type SharedLock struct {
	Name      string
	TTL       time.Duration
	HoldUntil HoldUntil
}

type rawSharedLock struct {
	Name       string `yaml:"name"`
	TTLSeconds *int   `yaml:"ttlSeconds"`
	HoldUntil  string `yaml:"holdUntil"`
}

// validLockName: 1 to 128 letters, digits, '.', '_' or '-', starting with a
// letter or digit (the shared-lock server's rule). A loop, not a regexp:
// compiling one at init costs every start of the wrapper half a millisecond.
func validLockName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if !alnum && (i == 0 || (c != '.' && c != '_' && c != '-')) {
			return false
		}
	}
	return true
}

// DefaultLockTTL is the TTL of a shared lock without ttlSeconds.
const DefaultLockTTL = 15 * time.Second

func validateSharedLock(d *decoder, n *yaml.Node, raw *rawSharedLock) *SharedLock {
	l := &SharedLock{Name: raw.Name, TTL: DefaultLockTTL, HoldUntil: HoldUntilExit}
	if !validLockName(raw.Name) {
		d.fail(child(n, "name"), "sharedLock.name", "required: 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit, got %q", raw.Name)
	}
	if raw.TTLSeconds != nil {
		if *raw.TTLSeconds < 2 || *raw.TTLSeconds > 86400 {
			d.fail(child(n, "ttlSeconds"), "sharedLock.ttlSeconds", "must be 2 to 86400, got %d", *raw.TTLSeconds)
		}
		l.TTL = time.Duration(*raw.TTLSeconds) * time.Second
	}
	switch HoldUntil(raw.HoldUntil) {
	case "":
	case HoldUntilStarted, HoldUntilReady, HoldUntilExit:
		l.HoldUntil = HoldUntil(raw.HoldUntil)
	default:
		d.fail(child(n, "holdUntil"), "sharedLock.holdUntil", "must be started, ready or exit, got %q", raw.HoldUntil)
	}
	return l
}
