package pageout

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

func rssFileKiB(t *testing.T) int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssFile:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// The binary's pages that nothing touches any more leave the resident set,
// and the program runs on (the pages it needs come back).
func TestBinary(t *testing.T) {
	before := rssFileKiB(t)
	n, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFileKiB(t)
	if n == 0 || after > before/2 {
		t.Errorf("asked to reclaim %d bytes: file-backed resident memory %d KiB before, %d KiB after", n, before, after)
	}
	t.Logf("RssFile %d KiB -> %d KiB", before, after)
}
