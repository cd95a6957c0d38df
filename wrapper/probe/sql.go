package probe

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

// sqlCheck speaks to PostgreSQL through pgx's connection layer (pgconn)
// alone: the simple query protocol returns every value as text, which is all
// a probe compares, and leaving out pgx's type system keeps 4 MB out of the
// binary (and about 3 MB out of the wrapper's resident memory).
type sqlCheck struct {
	c      *config.SQLCheck
	config *pgconn.Config
	dsn    string // redacted
}

func newSQL(p *config.Probe, _ *Target) (Checker, error) {
	cfg, err := pgconn.ParseConfig(p.SQL.DSN)
	if err != nil {
		// pgx's message may quote the DSN: give only the redacted one
		return nil, fmt.Errorf("sql probe: cannot parse the DSN %s", config.Redact(p.SQL.DSN))
	}
	return &sqlCheck{c: p.SQL, config: cfg, dsn: config.Redact(p.SQL.DSN)}, nil
}

// Check connects (a new connection each time: it proves that a client can
// connect, and nothing stays open between checks), runs the query and
// compares the first column of the first row with expect.
func (s *sqlCheck) Check(ctx context.Context) error {
	conn, err := pgconn.ConnectConfig(ctx, s.config.Copy())
	if err != nil {
		return fmt.Errorf("connect %s: %w", s.dsn, redactErr(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	results, err := conn.Exec(ctx, s.c.Query).ReadAll()
	if err != nil {
		return fmt.Errorf("query %q: %w", s.c.Query, redactErr(err))
	}
	if s.c.Expect == nil {
		return nil
	}
	var got []byte
	found := false
	for _, r := range results {
		if r.Err != nil {
			return fmt.Errorf("query %q: %w", s.c.Query, redactErr(r.Err))
		}
		if len(r.Rows) > 0 && len(r.Rows[0]) > 0 {
			got, found = r.Rows[0][0], true
			break
		}
	}
	if !found || got == nil || string(got) != *s.c.Expect {
		shown := "no row"
		if found && got == nil {
			shown = "NULL"
		} else if found {
			shown = fmt.Sprintf("%q", got)
		}
		return fmt.Errorf("query %q returned %s, want %q", s.c.Query, shown, *s.c.Expect)
	}
	return nil
}

// redactErr keeps pgx's message but never a password it might carry.
func redactErr(err error) error {
	return errors.New(config.Redact(err.Error()))
}
