package logline

import (
	"math/rand/v2"
	"testing"
)

// firstSpecialByBytes is firstSpecial one byte at a time, from safeByte.
func firstSpecialByBytes(s []byte) int {
	for i, c := range s {
		if !safeByte[c] {
			return i
		}
	}
	return len(s)
}

// blockEnd is what blockSpecial returns for s: the first special byte
// within the whole 16-byte blocks, or where they end.
func blockEnd(s []byte) int {
	if i := firstSpecialByBytes(s); i < len(s)&^15 {
		return i
	}
	return len(s) &^ 15
}

// Every byte value, at every place of every length up to 48, alone in
// plain text and after another special byte: blockSpecial (SSE2 on amd64),
// its plain Go form and firstSpecial find what a byte-by-byte look does.
func TestBlockSpecial(t *testing.T) {
	for n := 0; n <= 48; n++ {
		for at := 0; at < n; at++ {
			for c := 0; c < 256; c++ {
				s := make([]byte, n)
				for i := range s {
					s[i] = 'a' + byte(i%26)
				}
				s[at] = byte(c)
				check(t, s)
				if at+1 < n {
					s[at+1] = '"'
					check(t, s)
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for k := 0; k < 20000; k++ {
		s := make([]byte, r.IntN(300))
		for i := range s {
			s[i] = ' ' + byte(r.IntN(95))
			if r.IntN(200) == 0 {
				s[i] = byte(r.IntN(256))
			}
		}
		check(t, s)
	}
}

func check(t *testing.T, s []byte) {
	t.Helper()
	want := blockEnd(s)
	if got := blockSpecial(s); got != want {
		t.Fatalf("blockSpecial(%q) = %d, want %d", s, got, want)
	}
	if got := blockSpecialSWAR(s); got != want {
		t.Fatalf("blockSpecialSWAR(%q) = %d, want %d", s, got, want)
	}
	if got, want := firstSpecial(s), firstSpecialByBytes(s); got != want {
		t.Fatalf("firstSpecial(%q) = %d, want %d", s, got, want)
	}
}
