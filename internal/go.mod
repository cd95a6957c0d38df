module github.com/process-wrapper/process-wrapper/internal

go 1.26.0

require (
	github.com/alecthomas/kong v1.17.0
	github.com/go-logfmt/logfmt v0.6.1
)
