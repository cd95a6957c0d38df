//go:build race

package sharedlock

// raceBuild: the race detector slows the server several times over; timing
// bounds are wider under it.
const raceBuild = true
