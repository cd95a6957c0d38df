module github.com/process-wrapper/process-wrapper/integration

go 1.26.0
