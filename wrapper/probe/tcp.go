package probe

import (
	"context"
	"net"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

type tcpCheck struct {
	socket string
	dialer net.Dialer
}

func newTCP(p *config.Probe, _ *Target) (Checker, error) {
	return &tcpCheck{socket: p.TCP.Socket}, nil
}

// Check connects and closes, as kubelet's tcpSocket probe does.
func (c *tcpCheck) Check(ctx context.Context) error {
	conn, err := c.dialer.DialContext(ctx, "tcp", c.socket)
	if err != nil {
		return err
	}
	return conn.Close()
}
