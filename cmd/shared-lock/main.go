// Command shared-lock is a placeholder until its issue lands: it prints its version.
package main

import (
	"fmt"
	"os"

	"github.com/process-wrapper/process-wrapper/internal/version"
)

func main() {
	fmt.Println(version.String("shared-lock"))
	if len(os.Args) > 1 && (os.Args[1] == "-version" || os.Args[1] == "--version") {
		return
	}
	fmt.Fprintln(os.Stderr, "shared-lock: not implemented yet")
	os.Exit(2)
}
