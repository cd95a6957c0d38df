module github.com/process-wrapper/process-wrapper/metadatamock

go 1.26.0

require github.com/process-wrapper/process-wrapper/internal v0.0.0

require (
	github.com/alecthomas/kong v1.17.0 // indirect
	github.com/go-logfmt/logfmt v0.6.1 // indirect
)

replace github.com/process-wrapper/process-wrapper/internal => ../internal
