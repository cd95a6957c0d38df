module github.com/process-wrapper/process-wrapper/sharedlock

go 1.26.0
