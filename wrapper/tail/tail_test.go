package tail

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func lines(from, to int) []byte {
	var b bytes.Buffer
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	return b.Bytes()
}

func TestLast(t *testing.T) {
	var tl Tail
	if got := tl.Last(5); got != nil {
		t.Errorf("an empty tail: %q", got)
	}
	tl.Write(lines(1, 3))
	tl.Write(lines(4, 4))
	for n, want := range map[int]string{0: "", 1: "line 4\n", 2: "line 3\nline 4\n", 4: string(lines(1, 4)), 10: string(lines(1, 4))} {
		if got := string(tl.Last(n)); got != want {
			t.Errorf("Last(%d) = %q, want %q", n, got, want)
		}
	}
}

// What is kept stays whole lines, at most Size bytes, the newest ones.
func TestKeepsSizeInWholeLines(t *testing.T) {
	var tl Tail
	for i := 1; i <= 5000; i += 7 {
		tl.Write(lines(i, i+6))
		if len(tl.buf) > Size || (len(tl.buf) > 0 && (tl.buf[len(tl.buf)-1] != '\n' || !bytes.HasPrefix(tl.buf, []byte("line ")))) {
			t.Fatalf("after line %d: %d bytes kept, starting %q", i+6, len(tl.buf), tl.buf[:min(20, len(tl.buf))])
		}
	}
	if got := string(tl.Last(2)); got != "line 5004\nline 5005\n" {
		t.Errorf("the newest: %q", got)
	}
	if len(tl.buf) < Size-20 {
		t.Errorf("only %d bytes kept of %d", len(tl.buf), Size)
	}
	// one write larger than Size keeps its own end, from a line's start
	big := lines(1, 5000)
	tl.Write(big)
	if !bytes.HasSuffix(big, tl.buf) || len(tl.buf) > Size || !strings.HasPrefix(string(tl.buf), "line ") {
		t.Errorf("after a big write: %d bytes, %q...", len(tl.buf), tl.buf[:20])
	}
}

func TestFollow(t *testing.T) {
	var tl Tail
	tl.Write(lines(1, 2))
	past, f := tl.Follow(1)
	if string(past) != "line 2\n" {
		t.Errorf("past %q", past)
	}
	tl.Write(lines(3, 3))
	if got := string(<-f.C); got != "line 3\n" {
		t.Errorf("followed %q", got)
	}
	// a follower that does not read loses writes, and is told how many;
	// the writer never waits
	for i := 0; i < followerQueue+10; i++ {
		tl.Write(lines(i, i))
	}
	if d := f.Dropped(); d != 10 {
		t.Errorf("dropped %d, want 10", d)
	}
	f.Stop()
	tl.Write(lines(9, 9))
	if len(f.C) != followerQueue {
		t.Errorf("a stopped follower still receives: %d queued", len(f.C))
	}
}
