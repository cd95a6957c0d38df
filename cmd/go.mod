module github.com/process-wrapper/process-wrapper/cmd

go 1.26.0

require (
	github.com/process-wrapper/process-wrapper/internal v0.0.0
	github.com/process-wrapper/process-wrapper/metadatamock v0.0.0
	github.com/process-wrapper/process-wrapper/metricsmock v0.0.0
	github.com/process-wrapper/process-wrapper/sharedlock v0.0.0
	github.com/process-wrapper/process-wrapper/wrapper v0.0.0
)

replace github.com/process-wrapper/process-wrapper/wrapper => ../wrapper

replace github.com/process-wrapper/process-wrapper/internal => ../internal

replace github.com/process-wrapper/process-wrapper/sharedlock => ../sharedlock

replace github.com/process-wrapper/process-wrapper/metadatamock => ../metadatamock

replace github.com/process-wrapper/process-wrapper/metricsmock => ../metricsmock
