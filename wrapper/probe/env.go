package probe

import (
	"context"
	"fmt"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

type envCheck struct {
	c *config.EnvCheck
	t *Target
}

func newEnv(p *config.Probe, t *Target) (Checker, error) { return &envCheck{c: p.Env, t: t}, nil }

// Check looks the variable up in the environment of the process's current
// run (inherited, env files and envs). A wanted value is compared but never
// shown in the reason: env values are often secrets.
func (e *envCheck) Check(context.Context) error {
	v, ok := config.LookupEnvOK(e.t.Environ(), e.c.Name)
	if !ok {
		return fmt.Errorf("%s is not set", e.c.Name)
	}
	if e.c.Value != nil && v != *e.c.Value {
		return fmt.Errorf("%s does not have the expected value", e.c.Name)
	}
	return nil
}
