package config

import (
	"time"

	"gopkg.in/yaml.v3"
)

// Hook is one post-start hook: a command, or SQL statements.
type Hook struct {
	Process string // the process it belongs to (its environment is the command's)
	Index   int
	Command []string
	Env     []KV
	SQL     *SQLHook
	Timeout time.Duration
}

// SQLHook runs statements on PostgreSQL, in order, in one session.
type SQLHook struct {
	DSN        string   `yaml:"dsn"`
	Statements []string `yaml:"statements"`
}

type rawHook struct {
	Command        []string `yaml:"command"`
	Env            KVList   `yaml:"env"`
	SQL            *SQLHook `yaml:"sql"`
	TimeoutSeconds *int     `yaml:"timeoutSeconds"`
}

// DefaultHookTimeout bounds one try of a hook.
const DefaultHookTimeout = 30 * time.Second

func validateHook(d *decoder, n *yaml.Node, field, process string, i int, raw *rawHook) Hook {
	h := Hook{Process: process, Index: i, Command: raw.Command, Env: raw.Env, SQL: raw.SQL, Timeout: DefaultHookTimeout}
	switch {
	case raw.Command != nil && raw.SQL != nil:
		d.fail(n, field, "has both command and sql: use one")
	case raw.SQL != nil:
		if raw.SQL.DSN == "" {
			d.fail(child(child(n, "sql"), "dsn"), field+".sql.dsn", "required: a PostgreSQL connection string")
		}
		if len(raw.SQL.Statements) == 0 {
			d.fail(child(child(n, "sql"), "statements"), field+".sql.statements", "required: the statements to run")
		}
		if raw.Env != nil {
			d.fail(child(n, "env"), field+".env", "env is for a command hook")
		}
	case len(raw.Command) == 0 || raw.Command[0] == "":
		d.fail(n, field, "needs a command (the program and its arguments) or sql")
	}
	for _, kv := range raw.Env {
		if err := checkEnvName(kv.Key); err != nil {
			d.fail(child(child(n, "env"), kv.Key), field+".env."+kv.Key, "%v", err)
		}
	}
	if raw.TimeoutSeconds != nil {
		if *raw.TimeoutSeconds < 1 {
			d.fail(child(n, "timeoutSeconds"), field+".timeoutSeconds", "must be at least 1, got %d", *raw.TimeoutSeconds)
		}
		h.Timeout = time.Duration(*raw.TimeoutSeconds) * time.Second
	}
	return h
}
