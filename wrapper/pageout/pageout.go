// Package pageout gives back the pages of the wrapper's own binary that
// only its start-up used.
//
// Most of the wrapper's resident memory is its binary's code and read-only
// data, touched once by package initialisers (every linked package has
// one, and the kernel maps 64 KiB around each page touched): about 10 MiB,
// of which an idle wrapper uses a tenth afterwards. Once the processes are
// started, MADV_PAGEOUT on the binary's read-only mappings tells the kernel
// to reclaim those pages now rather than under pressure; the ones still in
// use come back on their next touch (read from the file, once), and
// MADV_RANDOM then keeps the kernel from reading ahead around each (which
// would bring back 128 KiB per page needed). Pages that
// another process maps too (the same binary in another container of the
// node) are left alone by the kernel. Writable mappings (data, heap) are
// never touched.
package pageout

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Binary reclaims the read-only mappings of the running executable and
// returns how many bytes it asked the kernel to reclaim. Kernels before
// 5.4 (no MADV_PAGEOUT) answer with an error and nothing changes.
func Binary() (int, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("pageout: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("pageout: %w", err)
	}
	defer f.Close()
	total := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 00400000-0099e000 r-xp 00000000 fe:00 9980122   /path/to/binary
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start {
			continue
		}
		for _, advice := range []uintptr{unix.MADV_PAGEOUT, unix.MADV_RANDOM} {
			if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), advice); errno != 0 {
				return total, fmt.Errorf("pageout: madvise: %w", errno)
			}
		}
		total += int(end - start)
	}
	return total, sc.Err()
}
