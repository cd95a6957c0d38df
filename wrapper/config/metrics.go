package config

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// Metrics is where a process serves its Prometheus metrics, on loopback:
// /prommerge scrapes it. Only the config names targets, never a request.
type Metrics struct {
	Port int
	Path string // starts with '/'; default /metrics
}

type rawMetrics struct {
	Port int    `yaml:"port"`
	Path string `yaml:"path"`
}

func validateMetrics(d *decoder, n *yaml.Node, raw *rawMetrics) *Metrics {
	m := &Metrics{Port: raw.Port, Path: raw.Path}
	if raw.Port < 1 || raw.Port > 65535 {
		d.fail(child(n, "port"), "metrics.port", "required: 1 to 65535, got %d", raw.Port)
	}
	switch {
	case m.Path == "":
		m.Path = "/metrics"
	case !strings.HasPrefix(m.Path, "/") || strings.ContainsAny(m.Path, " \t\r\n#"):
		d.fail(child(n, "path"), "metrics.path", "must be a URL path starting with '/', got %q", raw.Path)
	}
	return m
}
