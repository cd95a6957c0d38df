// Command process-wrapper is the container entrypoint: see the README.
package main

import (
	"os"

	"github.com/process-wrapper/process-wrapper/wrapper/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout))
}
