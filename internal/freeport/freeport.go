// Package freeport holds the test helper that picks a loopback TCP port for
// a server a test starts and cannot give port 0 (an embedded etcd, a
// wrapper whose address must be known before it writes anything).
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

// The range ports come from: below the kernel's ephemeral range (32768-60999
// by default), where outgoing connections take their local ports, and below
// the 20000+ that .ci/services picks its servers' ports from.
const low, high = 12000, 20000

var handedOut sync.Map

// Loopback returns a port on 127.0.0.1 that is free when asked and was not
// handed out before in this test binary. A port taken with Listen on port 0
// comes from the ephemeral range, and the packages tested beside this one
// can take it for an outgoing connection before the server binds it.
func Loopback(t testing.TB) int {
	t.Helper()
	for range 1000 {
		p := low + rand.IntN(high-low)
		if _, dup := handedOut.LoadOrStore(p, true); dup {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		return p
	}
	t.Fatalf("no free loopback port in %d-%d", low, high-1)
	return 0
}
