// Command metrics-mock records process-wrapper's UDP events: see the README.
package main

import (
	"os"

	"github.com/process-wrapper/process-wrapper/metricsmock/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout))
}
