module github.com/process-wrapper/process-wrapper/metadatamock

go 1.26.0
