//go:build race

package e2e

// raceBuild: when the tests run with -race, the wrapper under test is built
// with the race detector too, so that races in the real binary fail the run.
const raceBuild = true
