package events

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/lifecycle"
	"github.com/process-wrapper/process-wrapper/internal/logline"
)

// SenderConfig is what the environment says about the metrics server.
type SenderConfig struct {
	Address   string            // METRICS_SERVER_ADDRESS: host:port of the UDP server
	Node      string            // NODE_NAME
	Namespace string            // POD_NAMESPACE
	Pod       string            // HOSTNAME
	Labels    map[string]string // METRICS_JSON_EXTRA_LABELS
	// LabelsFile is METRICS_EXTRA_LABELS_FILE_PATH: a downward API labels
	// file (key="value" lines), read again when it changes, as kubelet
	// rewrites it when the pod's labels change.
	LabelsFile string
	Exclude    []string // METRICS_EXTRA_LABELS_FILE_EXCLUDE: keys of the file left out
}

// ConfigFromEnv reads the sender's configuration. It returns a zero config
// (no sending) when METRICS_SERVER_ADDRESS is unset, and an error that
// names the variable for anything malformed.
func ConfigFromEnv(getenv func(string) string) (SenderConfig, error) {
	c := SenderConfig{
		Address:    getenv("METRICS_SERVER_ADDRESS"),
		Node:       getenv("NODE_NAME"),
		Namespace:  getenv("POD_NAMESPACE"),
		Pod:        getenv("HOSTNAME"),
		LabelsFile: getenv("METRICS_EXTRA_LABELS_FILE_PATH"),
	}
	if c.Address == "" {
		return SenderConfig{}, nil
	}
	if c.Pod == "" {
		c.Pod, _ = os.Hostname()
	}
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		return c, fmt.Errorf("METRICS_SERVER_ADDRESS: want host:port, got %q: %w", c.Address, err)
	}
	if v := getenv("METRICS_JSON_EXTRA_LABELS"); v != "" {
		if err := json.Unmarshal([]byte(v), &c.Labels); err != nil {
			return c, fmt.Errorf("METRICS_JSON_EXTRA_LABELS: want a JSON object of strings, e.g. {\"team\":\"core\"}: %w", err)
		}
	}
	for _, k := range strings.Split(getenv("METRICS_EXTRA_LABELS_FILE_EXCLUDE"), ",") {
		if k = strings.TrimSpace(k); k != "" {
			c.Exclude = append(c.Exclude, k)
		}
	}
	if c.LabelsFile != "" {
		if _, err := ReadLabelsFile(c.LabelsFile); err != nil {
			return c, fmt.Errorf("METRICS_EXTRA_LABELS_FILE_PATH: %w", err)
		}
	}
	return c, nil
}

// ReadLabelsFile reads a downward API labels file: one key="value" line per
// label, the value quoted as Go quotes strings.
func ReadLabelsFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	labels := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		k, q, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s:%d: want key=\"value\", got %q", path, n, line)
		}
		v, err := strconv.Unquote(q)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: the value of %q is not a quoted string: %q", path, n, k, q)
		}
		labels[k] = v
	}
	return labels, sc.Err()
}

// Bounds of the sender's waits on the network.
const (
	dialTimeout = time.Second     // resolving the server's name
	redialAfter = 5 * time.Second // after a failed resolution
	drainFor    = 2 * time.Second // sending what is queued at the wrapper's exit
)

var errNotResolved = errors.New("the server's address did not resolve a moment ago")

// queueLen bounds the events waiting to be sent: a burst (every process
// exiting at once) fits; beyond it events are counted as dropped, as the
// supervisor never waits for the network.
const queueLen = 256

// Sender sends lifecycle events to the metrics server, one JSON object per
// UDP datagram, from its own goroutine: Observe never blocks.
type Sender struct {
	cfg  SenderConfig
	log  *logline.Logger
	conn net.Conn
	q    chan lifecycle.Event

	// Sent counts datagrams sent; Dropped counts events not sent, by
	// reason: [DropQueueFull], [DropOversize], [DropSendError].
	Sent    atomic.Uint64
	Dropped [3]atomic.Uint64

	mu        sync.Mutex // labels and the file's state, read by Run only, but tests call labels too
	fileMod   time.Time
	fileSize  int64
	fileLabel map[string]string
	warned    bool
	nextDial  time.Time // Run's goroutine only
}

// The reasons an event is not sent.
const (
	DropQueueFull = iota // more than queueLen events waiting
	DropOversize         // larger than a datagram may be, even shortened
	DropSendError        // the send failed (no route, refused, ...)
)

// DropReasons name the reasons, in order, for the metric's label.
var DropReasons = [3]string{"queue_full", "oversize", "send_error"}

// NewSender returns a sender; Run sends. The address is resolved when the
// first event is sent, and again after a failed send: the server's name
// may not resolve yet when the pod starts.
func NewSender(cfg SenderConfig, log *logline.Logger) *Sender {
	return &Sender{cfg: cfg, log: log, q: make(chan lifecycle.Event, queueLen)}
}

// Observe queues the lifecycle events among e.
func (s *Sender) Observe(e *Event) {
	if !lifecycle.Kinds[e.Kind] {
		return
	}
	ev := lifecycle.Event{Event: e.Kind, Time: time.Now().UTC(), Process: e.Process, Pid: e.Pid, Probe: e.Probe, Reason: e.Reason}
	if e.Kind == ProcessExit || e.Kind == EssentialExit || e.Kind == RestartBudgetSpent {
		code := e.Code
		ev.Code = &code
	}
	select {
	case s.q <- ev:
	default:
		s.Dropped[DropQueueFull].Add(1)
	}
}

// Run sends the queued events until ctx ends, then what is still queued
// (the shutdown event among them), and closes the socket.
func (s *Sender) Run(ctx context.Context) {
	defer func() {
		if s.conn != nil {
			s.conn.Close()
		}
	}()
	for {
		select {
		case ev := <-s.q:
			s.send(ev)
		case <-ctx.Done():
			// what is queued goes out, but the wrapper's exit waits for
			// it at most drainFor (a server name that does not resolve)
			deadline := time.Now().Add(drainFor)
			for {
				select {
				case ev := <-s.q:
					if time.Now().After(deadline) {
						s.Dropped[DropSendError].Add(1)
						continue
					}
					s.send(ev)
				default:
					return
				}
			}
		}
	}
}

func (s *Sender) send(ev lifecycle.Event) {
	ev.Node, ev.Namespace, ev.Pod = s.cfg.Node, s.cfg.Namespace, s.cfg.Pod
	ev.Labels = s.labels()
	b, err := json.Marshal(ev)
	if err == nil && len(b) > lifecycle.MaxDatagram && len(ev.Reason) > 0 {
		// the reason (a probe's output, say) is what grows: shorten it
		over := len(b) - lifecycle.MaxDatagram + len(" [cut]") + 8
		ev.Reason = shorten(ev.Reason, len(ev.Reason)-over) + " [cut]"
		b, err = json.Marshal(ev)
	}
	if err != nil || len(b) > lifecycle.MaxDatagram {
		s.Dropped[DropOversize].Add(1)
		return
	}
	err = s.write(b)
	if err != nil && s.conn != nil {
		// a connected UDP socket reports an earlier datagram's refusal
		// (ICMP port unreachable: the server was not up yet, or its
		// Service had no endpoint) on this write, which then sent nothing.
		// A fresh socket, from a new port, also escapes a stale conntrack
		// entry of that refusal: this datagram is tried once more on it.
		s.conn.Close()
		s.conn = nil
		err = s.write(b)
	}
	if err != nil {
		if s.conn != nil {
			s.conn.Close()
			s.conn = nil
		}
		// the server may be down or not started yet: count, log once
		s.Dropped[DropSendError].Add(1)
		s.mu.Lock()
		first := !s.warned
		s.warned = true
		s.mu.Unlock()
		if first {
			s.log.Warn("cannot send lifecycle events to the metrics server (logged once until a send succeeds; counted in process_wrapper_events_dropped_total)", "address", s.cfg.Address, "err", err)
		}
		return
	}
	s.Sent.Add(1)
	s.mu.Lock()
	again := s.warned
	s.warned = false
	s.mu.Unlock()
	if again {
		s.log.Info("sending lifecycle events again", "address", s.cfg.Address)
	}
}

// write sends one datagram, resolving and connecting first when there is
// no socket.
func (s *Sender) write(b []byte) error {
	if s.conn == nil {
		// a UDP "connection" sends to the one address resolved here;
		// after a failed resolution the next try waits redialAfter, so
		// that a burst of events does not wait for DNS once each
		if time.Now().Before(s.nextDial) {
			return errNotResolved
		}
		conn, err := (&net.Dialer{Timeout: dialTimeout}).Dial("udp", s.cfg.Address)
		if err != nil {
			s.nextDial = time.Now().Add(redialAfter)
			return err
		}
		s.conn = conn
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, err := s.conn.Write(b)
	return err
}

// shorten cuts s to at most n bytes at a rune boundary.
func shorten(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if n >= len(s) {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// labels merges METRICS_JSON_EXTRA_LABELS with the labels file minus its
// excluded keys (the file, which follows the pod's labels, wins). The
// file is read again when its size or time changes; a file that turned
// unreadable keeps the labels last read, with a warning.
func (s *Sender) labels() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.LabelsFile != "" {
		if fi, err := os.Stat(s.cfg.LabelsFile); err == nil && (!fi.ModTime().Equal(s.fileMod) || fi.Size() != s.fileSize) {
			l, err := ReadLabelsFile(s.cfg.LabelsFile)
			if err != nil {
				s.log.Warn("cannot read the labels file: keeping the labels read before", "path", s.cfg.LabelsFile, "err", err)
			} else {
				s.fileLabel = l
			}
			s.fileMod, s.fileSize = fi.ModTime(), fi.Size()
		}
	}
	if len(s.cfg.Labels) == 0 && len(s.fileLabel) == 0 {
		return nil
	}
	out := make(map[string]string, len(s.cfg.Labels)+len(s.fileLabel))
	maps.Copy(out, s.cfg.Labels)
	for k, v := range s.fileLabel {
		if !slices.Contains(s.cfg.Exclude, k) {
			out[k] = v
		}
	}
	return out
}
