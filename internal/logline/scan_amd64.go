package logline

// blockSpecial returns the index of the first byte that is not plain
// printable ASCII within the whole 16-byte blocks of s, or where those
// blocks end (len(s) rounded down to 16): blockSpecialSWAR's result, 16
// bytes an SSE2 step (scan_amd64.s). SSE2 is in every amd64 CPU.
//
//go:noescape
func blockSpecial(s []byte) int
