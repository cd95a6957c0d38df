module github.com/process-wrapper/process-wrapper/prommerge

go 1.26.0
