// Package waitfor holds the test helper that waits on a condition with a
// deadline, so that no test synchronises with time.Sleep.
package waitfor

import (
	"testing"
	"time"
)

// Condition polls cond every few milliseconds until it returns true or the
// timeout passes; then it fails the test with what, describing the awaited state.
func Condition(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// Poll reports whether cond became true before the timeout.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	step := time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(step) // polling interval of a deadline-bounded wait, not a synchronisation sleep
		if step < 50*time.Millisecond {
			step *= 2
		}
	}
}
