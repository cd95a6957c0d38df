//go:build !amd64

package logline

// blockSpecial: see blockSpecialSWAR.
func blockSpecial(s []byte) int { return blockSpecialSWAR(s) }
