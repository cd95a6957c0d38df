package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
	amqp "github.com/rabbitmq/amqp091-go"
)

// AMQPDefaults are the wrapper's AMQP_PROBE_RABBITMQ_* variables: a DSN
// template used when a probe gives no dsn, where $(AMQP_PROBE_RABBITMQ_USER)
// and $(AMQP_PROBE_RABBITMQ_PASS) stand for the credentials (URL-escaped);
// without those references the credentials go into the URL's user part.
type AMQPDefaults struct {
	DSNTemplate, User, Pass string
}

// DSN returns the DSN a probe without one uses.
func (d AMQPDefaults) DSN() (string, error) {
	if d.DSNTemplate == "" {
		return "", errors.New("amqp probe: no dsn, and AMQP_PROBE_RABBITMQ_DSN_TEMPLATE is not set")
	}
	used := false
	dsn := config.Expand(d.DSNTemplate, func(name string) (string, bool) {
		switch name {
		case "AMQP_PROBE_RABBITMQ_USER":
			used = true
			return url.QueryEscape(d.User), true
		case "AMQP_PROBE_RABBITMQ_PASS":
			used = true
			return url.QueryEscape(d.Pass), true
		}
		return "", false
	})
	if !used && d.User != "" {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("AMQP_PROBE_RABBITMQ_DSN_TEMPLATE: %w", errors.New(config.Redact(err.Error())))
		}
		u.User = url.UserPassword(d.User, d.Pass)
		dsn = u.String()
	}
	return dsn, nil
}

type amqpCheck struct {
	dsn, shown, queue string
}

func newAMQP(p *config.Probe, t *Target) (Checker, error) {
	dsn := p.AMQP.DSN
	if dsn == "" {
		var err error
		if dsn, err = t.AMQP.DSN(); err != nil {
			return nil, err
		}
	}
	if _, err := amqp.ParseURI(dsn); err != nil {
		return nil, fmt.Errorf("amqp probe: bad DSN %s: %v", config.Redact(dsn), errors.New(config.Redact(err.Error())))
	}
	return &amqpCheck{dsn: dsn, shown: config.Redact(dsn), queue: p.AMQP.Queue}, nil
}

// Check dials, opens a channel and, when a queue is named, declares it
// passively (it must exist). The connection is closed when ctx ends, so a
// server that stops answering cannot hold the check past its timeout.
func (a *amqpCheck) Check(ctx context.Context) error {
	var stopDial func() bool
	conn, err := amqp.DialConfig(a.dsn, amqp.Config{
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// the handshake ends with ctx too: the socket is closed then
			stopDial = context.AfterFunc(ctx, func() { c.Close() })
			return c, nil
		},
		Heartbeat: 10 * time.Second,
	})
	if stopDial != nil {
		stopDial()
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("dial %s: %w", a.shown, ctx.Err())
		}
		return fmt.Errorf("dial %s: %w", a.shown, errors.New(config.Redact(err.Error())))
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("%s: open channel: %w", a.shown, err)
	}
	defer ch.Close()
	if a.queue != "" {
		if _, err := ch.QueueDeclarePassive(a.queue, false, false, false, false, nil); err != nil {
			return fmt.Errorf("%s: queue %q: %w", a.shown, a.queue, err)
		}
	}
	return ctx.Err()
}
