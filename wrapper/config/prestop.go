package config

import (
	"time"

	"gopkg.in/yaml.v3"
)

// PreStop is the handler run before a process's stop signal, in
// Kubernetes' shape: one of a command, an HTTP GET or a sleep.
type PreStop struct {
	Exec    []string   // run with the process's user, environment, working directory and chroot
	HTTPGet *HTTPCheck // a status in 200-399 is success
	Sleep   time.Duration
}

// Kind names the handler for logs: exec, httpGet or sleep.
func (p *PreStop) Kind() string {
	switch {
	case p.Exec != nil:
		return "exec"
	case p.HTTPGet != nil:
		return "httpGet"
	}
	return "sleep"
}

type rawLifecycle struct {
	PreStop    *rawHandler `yaml:"preStop"`
	StopSignal string      `yaml:"stopSignal"`
}

// rawHandler is Kubernetes' LifecycleHandler.
type rawHandler struct {
	Exec    *ExecCheck  `yaml:"exec"`
	HTTPGet *rawHTTPGet `yaml:"httpGet"`
	Sleep   *rawSleep   `yaml:"sleep"`
}

type rawSleep struct {
	Seconds *int `yaml:"seconds"`
}

func validatePreStop(d *decoder, n *yaml.Node, raw *rawHandler) *PreStop {
	const field = "lifecycle.preStop"
	var kinds []string
	for _, k := range []struct {
		name string
		set  bool
	}{{"exec", raw.Exec != nil}, {"httpGet", raw.HTTPGet != nil}, {"sleep", raw.Sleep != nil}} {
		if k.set {
			kinds = append(kinds, k.name)
		}
	}
	kind, ok := d.oneOf(n, field, "handler", kinds, "exec, httpGet or sleep")
	if !ok {
		return nil
	}
	p := &PreStop{}
	switch kind {
	case "exec":
		if len(raw.Exec.Command) == 0 || raw.Exec.Command[0] == "" {
			d.fail(child(child(n, "exec"), "command"), field+".exec.command", "required: the program and its arguments")
		}
		p.Exec = raw.Exec.Command
	case "httpGet":
		c := raw.HTTPGet.check()
		validateHTTP(d, n, field+".httpGet", c)
		p.HTTPGet = c
	case "sleep":
		s := raw.Sleep.Seconds
		switch {
		case s == nil:
			d.fail(child(n, "sleep"), field+".sleep.seconds", "required: how long to wait before the stop signal")
		case *s < 0:
			d.fail(child(child(n, "sleep"), "seconds"), field+".sleep.seconds", "must be at least 0, got %d", *s)
		default:
			p.Sleep = time.Duration(*s) * time.Second
		}
	}
	return p
}
