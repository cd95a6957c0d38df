// Package version holds the build's version, stamped by the Makefile with
// -ldflags "-X github.com/process-wrapper/process-wrapper/internal/version.Version=...".
package version

import "runtime/debug"

// Version is the release name; "dev" when the build was not stamped.
var Version = "dev"

// Commit is the VCS revision the build was made from, when stamped.
var Commit = ""

// String returns the version line every binary prints for -version.
func String(binary string) string {
	v := Version
	if v == "dev" {
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	s := binary + " " + v
	if Commit != "" {
		s += " (" + Commit + ")"
	}
	return s
}
