package metricsmock

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

func TestDecode(t *testing.T) {
	good := `{"event":"process_exit","time":"2026-11-25T10:00:00.000Z","process":"web","pid":12,"code":3,"labels":{"team":"core"}}`
	e, err := Decode([]byte(good))
	if err != nil || e.Event != "process_exit" || *e.Code != 3 || e.Labels["team"] != "core" {
		t.Fatalf("%+v %v", e, err)
	}
	for in, want := range map[string]string{
		``:         "json",
		`not json`: "json",
		`{"event":"reboot","time":"2026-11-25T10:00:00Z"}`:                    "not a known event",
		`{"event":"shutdown"}`:                                                "time: required",
		`{"event":"shutdown","time":"yesterday"}`:                             "json",
		`{"event":"shutdown","time":"2026-11-25T10:00:00Z","extra":1}`:        "unknown field",
		`{"event":"shutdown","time":"2026-11-25T10:00:00Z"} {}`:               "more than one",
		`{"event":"shutdown","time":"2026-11-25T10:00:00Z","labels":{"a":1}}`: "json",
	} {
		if _, err := Decode([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%q) = %v, want %q", in, err, want)
		}
	}
}

// Datagrams over real UDP on loopback: valid ones are recorded and served,
// malformed ones counted, never fatal.
func TestUDPToHTTP(t *testing.T) {
	var logs bytes.Buffer
	rec := NewRecorder(3, logline.NewLogger(logline.NewOutput(&logs), "metrics-mock"))
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rec.ServeUDP(ctx, pc) }()
	defer func() { cancel(); <-done }()
	srv := httptest.NewServer(rec.Handler())
	defer srv.Close()

	conn, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, d := range []string{
		`{"event":"process_start","time":"2026-11-25T10:00:00Z","process":"web","pid":1}`,
		`garbage`,
		`{"event":"process_exit","time":"2026-11-25T10:00:01Z","process":"web","code":0}`,
		strings.Repeat("x", MaxDatagram+10),
		`{"event":"process_start","time":"2026-11-25T10:00:02Z","process":"db"}`,
		`{"event":"shutdown","time":"2026-11-25T10:00:03Z"}`,
	} {
		conn.Write([]byte(d))
	}
	var events []Event
	waitfor.Condition(t, 5*time.Second, "the events", func() bool {
		resp, err := http.Get(srv.URL + "/events")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		events = nil
		json.NewDecoder(resp.Body).Decode(&events)
		return len(events) == 3 && events[2].Event == "shutdown"
	})
	if events[0].Event != "process_exit" { // kept 3: the oldest went
		t.Errorf("events %+v", events)
	}
	resp, _ := http.Get(srv.URL + "/events?event=process_start&process=db")
	var filtered []Event
	json.NewDecoder(resp.Body).Decode(&filtered)
	resp.Body.Close()
	if len(filtered) != 1 || filtered[0].Process != "db" {
		t.Errorf("filtered %+v", filtered)
	}
	if resp, _ := http.Get(srv.URL + "/events?color=red"); resp.StatusCode != 400 {
		t.Errorf("unknown filter: %d", resp.StatusCode)
	}
	resp, _ = http.Get(srv.URL + "/metrics")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"metrics_mock_malformed_datagrams_total 2", `metrics_mock_events_total{event="process_start"} 2`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q:\n%s", want, b)
		}
	}
	if !strings.Contains(logs.String(), `msg="malformed datagram"`) {
		t.Errorf("malformed datagrams not logged:\n%s", logs.String())
	}
}
