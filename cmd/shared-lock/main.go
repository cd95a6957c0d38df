// Command shared-lock is the shared-lock server: see the README.
package main

import (
	"os"

	"github.com/process-wrapper/process-wrapper/sharedlock/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout))
}
