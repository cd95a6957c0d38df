package probe

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

// grpcCheck calls grpc.health.v1.Health/Check, the standard gRPC health
// checking protocol that kubelet's grpc probe speaks, over cleartext HTTP/2
// with net/http: the request and the response are one small protobuf
// message each, encoded here, so the wrapper does not link a gRPC library.
type grpcCheck struct {
	url     string
	service string
	client  *http.Client
	body    []byte
}

func newGRPC(p *config.Probe, _ *Target) (Checker, error) {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protocols, DisableKeepAlives: true}
	return &grpcCheck{
		url:     "http://" + net.JoinHostPort(p.GRPC.Host, strconv.Itoa(p.GRPC.Port)) + "/grpc.health.v1.Health/Check",
		service: p.GRPC.Service,
		client:  &http.Client{Transport: tr},
		body:    grpcFrame(healthRequest(p.GRPC.Service)),
	}, nil
}

// healthRequest encodes HealthCheckRequest{service: s}: field 1, bytes.
func healthRequest(s string) []byte {
	if s == "" {
		return nil
	}
	b := []byte{0x0a}
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// grpcFrame prefixes a message with gRPC's 5-byte header (not compressed,
// big-endian length).
func grpcFrame(msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

var servingStatus = map[uint64]string{0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}

// Check wants status SERVING.
func (g *grpcCheck) Check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url, bytes.NewReader(g.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	resp, err := g.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("grpc health %s: %w", g.target(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return fmt.Errorf("grpc health %s: %w", g.target(), err)
	}
	// grpc-status comes in the trailers, or in the headers of a
	// trailers-only answer (such as NOT_FOUND for an unknown service)
	status, msg := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	if status == "" {
		status, msg = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("grpc health %s: HTTP status %d", g.target(), resp.StatusCode)
	}
	if status != "0" {
		return fmt.Errorf("grpc health %s: grpc-status %s %s", g.target(), status, msg)
	}
	st, err := parseHealthResponse(body)
	if err != nil {
		return fmt.Errorf("grpc health %s: %w", g.target(), err)
	}
	if st != 1 {
		name, ok := servingStatus[st]
		if !ok {
			name = strconv.FormatUint(st, 10)
		}
		return fmt.Errorf("grpc health %s: %s", g.target(), name)
	}
	return nil
}

func (g *grpcCheck) target() string {
	if g.service == "" {
		return g.url
	}
	return g.url + " service " + strconv.Quote(g.service)
}

// parseHealthResponse reads HealthCheckResponse{status: field 1, varint}
// from one gRPC frame.
func parseHealthResponse(b []byte) (uint64, error) {
	if len(b) < 5 || b[0] != 0 {
		return 0, errors.New("malformed or compressed gRPC frame")
	}
	n := binary.BigEndian.Uint32(b[1:5])
	if int(n) != len(b)-5 {
		return 0, errors.New("truncated gRPC frame")
	}
	msg := b[5:]
	var status uint64 // absent field: 0, UNKNOWN
	for len(msg) > 0 {
		key, k := binary.Uvarint(msg)
		if k <= 0 {
			return 0, errors.New("bad protobuf key")
		}
		msg = msg[k:]
		switch key & 7 {
		case 0: // varint
			v, k := binary.Uvarint(msg)
			if k <= 0 {
				return 0, errors.New("bad protobuf varint")
			}
			if key>>3 == 1 {
				status = v
			}
			msg = msg[k:]
		case 2: // length-delimited: skip
			l, k := binary.Uvarint(msg)
			if k <= 0 || uint64(len(msg)-k) < l {
				return 0, errors.New("bad protobuf length")
			}
			msg = msg[k+int(l):]
		default:
			return 0, fmt.Errorf("unexpected protobuf wire type %d", key&7)
		}
	}
	return status, nil
}
