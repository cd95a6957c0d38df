//go:build !race

package sharedlock

const raceBuild = false
