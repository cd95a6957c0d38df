// Command metadata-mock is a GCE metadata server stand-in: see the README.
package main

import (
	"os"

	"github.com/process-wrapper/process-wrapper/metadatamock/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout))
}
