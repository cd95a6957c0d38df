package prommerge

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func serveFile(t testing.TB, path string) *httptest.Server {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func ownFamilies() []*dto.MetricFamily {
	return []*dto.MetricFamily{{
		Name: proto.String("process_wrapper_up"), Help: proto.String("The wrapper's own metric."), Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Label: []*dto.LabelPair{{Name: proto.String("process"), Value: proto.String("web")}}, Gauge: &dto.Gauge{Value: proto.Float64(1)}}},
	}}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// zeroDurations makes the scrape durations stable for golden files.
func zeroDurations(results []Result) {
	for i := range results {
		results[i].Duration = 0
	}
}

func TestMergeGolden(t *testing.T) {
	a, b := serveFile(t, "testdata/a.prom"), serveFile(t, "testdata/b.prom")
	m := &Merger{Label: "target", Timeout: 5 * time.Second}
	results := m.Scrape(context.Background(), []Target{{Name: "a", URL: a.URL}, {Name: "b", URL: b.URL}}, time.Second)
	zeroDurations(results)
	fams, rep := m.Merge(ownFamilies(), results)
	if rep.Conflicts["queue_depth"] != 1 {
		t.Errorf("conflicts %v", rep.Conflicts)
	}
	var out bytes.Buffer
	if err := Write(&out, fams); err != nil {
		t.Fatal(err)
	}
	golden(t, "merged.golden", out.Bytes())
	checkValid(t, out.Bytes())
}

func TestFailingAndSlowTargets(t *testing.T) {
	a := serveFile(t, "testdata/a.prom")
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer failing.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer slow.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("this is { not an exposition\n")) }))
	defer garbage.Close()
	m := &Merger{Label: "process"}
	began := time.Now()
	results := m.Scrape(context.Background(), []Target{{"a", a.URL}, {"failing", failing.URL}, {"slow", slow.URL}, {"garbage", garbage.URL}, {"gone", "http://127.0.0.1:1/metrics"}}, 300*time.Millisecond)
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("the scrape took %v: the slow target was not bounded", took)
	}
	zeroDurations(results)
	fams, _ := m.Merge(nil, results)
	var out bytes.Buffer
	if err := Write(&out, fams); err != nil {
		t.Fatal(err)
	}
	golden(t, "failing.golden", out.Bytes())
	checkValid(t, out.Bytes())
	for _, want := range []string{`prommerge_target_up{process="a"} 1`, `prommerge_target_up{process="failing"} 0`,
		`prommerge_target_up{process="slow"} 0`, `prommerge_target_up{process="garbage"} 0`, `prommerge_target_up{process="gone"} 0`} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
}

func TestScrapeTimeoutFromPrometheus(t *testing.T) {
	m := &Merger{Timeout: 10 * time.Second}
	r := httptest.NewRequest("GET", "/prommerge", nil)
	if got := m.ScrapeTimeout(r); got != 10*time.Second {
		t.Errorf("no header: %v", got)
	}
	r.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "2.5")
	if got := m.ScrapeTimeout(r); got != 2250*time.Millisecond {
		t.Errorf("header 2.5: %v", got)
	}
	r.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "nonsense")
	if got := m.ScrapeTimeout(r); got != 10*time.Second {
		t.Errorf("bad header: %v", got)
	}
}

// checkValid: the output parses again, every family is contiguous, and
// promtool accepts it when it is installed.
func checkValid(t *testing.T, b []byte) {
	t.Helper()
	if _, err := Parse(bytes.NewReader(b)); err != nil {
		t.Fatalf("the merged exposition does not parse: %v\n%s", err, b)
	}
	seen := map[string]bool{}
	last := ""
	for _, l := range strings.Split(string(b), "\n") {
		if f, ok := strings.CutPrefix(l, "# TYPE "); ok {
			name := strings.Fields(f)[0]
			if seen[name] && name != last {
				t.Errorf("family %s is not contiguous", name)
			}
			seen[name], last = true, name
		}
	}
	// promtool, which make test installs, checks validity and its lint rules too
	if path, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(path, "check", "metrics")
		cmd.Stdin = bytes.NewReader(b)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}
}

// randomExposition writes a valid exposition of random families.
func randomExposition(r *rand.Rand, families, series int) []byte {
	var b bytes.Buffer
	types := []string{"counter", "gauge", "untyped"}
	for f := 0; f < families; f++ {
		name := fmt.Sprintf("fam_%d", r.IntN(families*2))
		if strings.Contains(b.String(), "# TYPE "+name+" ") {
			continue
		}
		fmt.Fprintf(&b, "# HELP %s help %d\n# TYPE %s %s\n", name, f, name, types[r.IntN(len(types))])
		for s := 0; s < series; s++ {
			fmt.Fprintf(&b, "%s{target=\"t%d\",i=\"%d\"} %d\n", name, r.IntN(3), s, r.IntN(1000))
		}
	}
	return b.Bytes()
}

// FuzzMerge: random valid expositions (including conflicting types and
// targets' own "target" labels) always merge into a valid one.
func FuzzMerge(f *testing.F) {
	f.Add(uint64(1), uint8(3), uint8(4))
	f.Add(uint64(42), uint8(10), uint8(1))
	f.Fuzz(func(t *testing.T, seed uint64, nf, ns uint8) {
		r := rand.New(rand.NewPCG(seed, seed))
		var results []Result
		for i := 0; i < 3; i++ {
			fams, err := Parse(bytes.NewReader(randomExposition(r, int(nf%20)+1, int(ns%10)+1)))
			if err != nil {
				t.Fatalf("generated exposition does not parse: %v", err)
			}
			results = append(results, Result{Target: Target{Name: fmt.Sprintf("t%d", i)}, Families: fams})
		}
		fams, _ := (&Merger{}).Merge(nil, results)
		var out bytes.Buffer
		if err := Write(&out, fams); err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(bytes.NewReader(out.Bytes())); err != nil {
			t.Fatalf("merged exposition does not parse: %v\n%s", err, out.Bytes())
		}
	})
}

// BenchmarkMerge: 10 targets x 10,000 series. Reported beside the sum of
// the ten parses alone, measured in the same run (goal: merge <= 1.2x).
func BenchmarkMerge(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 7))
	var bodies [][]byte
	for i := 0; i < 10; i++ {
		var buf bytes.Buffer
		for f := 0; f < 100; f++ {
			fmt.Fprintf(&buf, "# HELP fam_%d help\n# TYPE fam_%d gauge\n", f, f)
			for s := 0; s < 100; s++ {
				fmt.Fprintf(&buf, "fam_%d{series=\"%d\",target=\"x\"} %d\n", f, s, r.IntN(1000))
			}
		}
		bodies = append(bodies, buf.Bytes())
	}
	parse := func() []Result {
		res := make([]Result, len(bodies))
		for i, body := range bodies {
			fams, err := Parse(bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			res[i] = Result{Target: Target{Name: fmt.Sprintf("t%d", i)}, Families: fams}
		}
		return res
	}
	b.Run("parse-only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			parse()
		}
	})
	b.Run("parse+merge", func(b *testing.B) {
		b.ReportAllocs()
		m := &Merger{}
		for b.Loop() {
			m.Merge(nil, parse())
		}
	})
	b.Run("parse+merge+write", func(b *testing.B) {
		b.ReportAllocs()
		m := &Merger{}
		var out bytes.Buffer
		for b.Loop() {
			fams, _ := m.Merge(nil, parse())
			out.Reset()
			if err := Write(&out, fams); err != nil {
				b.Fatal(err)
			}
		}
	})
}
