module github.com/process-wrapper/process-wrapper/metricsmock

go 1.26.0

require github.com/process-wrapper/process-wrapper/internal v0.0.0

require (
	github.com/alecthomas/kong v1.17.0 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
)

replace github.com/process-wrapper/process-wrapper/internal => ../internal
