module github.com/process-wrapper/process-wrapper/wrapper

go 1.26.0

require (
	github.com/alecthomas/kong v1.17.0 // indirect
	github.com/go-logfmt/logfmt v0.6.1 // indirect
	github.com/process-wrapper/process-wrapper/internal v0.0.0
	golang.org/x/sys v0.50.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)

replace github.com/process-wrapper/process-wrapper/internal => ../internal
