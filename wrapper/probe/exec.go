package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

type execCheck struct {
	argv []string
	t    *Target
}

func newExec(p *config.Probe, t *Target) (Checker, error) {
	if t.Reaper == nil {
		return nil, errors.New("exec probe: no reaper")
	}
	return &execCheck{argv: p.Exec.Command, t: t}, nil
}

// Check runs the command in its own process group with the process's
// environment; exit 0 is healthy. Its output (stdout and stderr, the first
// 4 KiB) goes into the reason. At the timeout its whole group is killed.
func (c *execCheck) Check(ctx context.Context) error {
	env := c.t.Environ()
	path, err := config.LookPath(c.argv[0], config.LookupEnv(env, "PATH"), "")
	if err != nil {
		return err
	}
	e, out, err := c.t.Reaper.Exec(ctx, path, c.argv, env)
	if err != nil {
		return fmt.Errorf("%s: %w", strings.Join(c.argv, " "), err)
	}
	if e.Code() != 0 {
		return fmt.Errorf("%s: %s: %s", strings.Join(c.argv, " "), e, excerpt(out))
	}
	return nil
}
