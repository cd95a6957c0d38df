package freeport

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
)

// Ports are handed out once, can be bound, and lie below the kernel's
// ephemeral range.
func TestLoopback(t *testing.T) {
	ephemeralLow := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(strings.Fields(string(b))[0], &ephemeralLow)
	}
	seen := map[int]bool{}
	for range 200 {
		p := Loopback(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if p >= ephemeralLow || p >= 20000 {
			t.Fatalf("port %d is not below the ephemeral range (%d) and .ci/services' 20000", p, ephemeralLow)
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		ln.Close()
	}
}
