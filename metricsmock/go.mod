module github.com/process-wrapper/process-wrapper/metricsmock

go 1.26.0
