package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// scrape reads an exposition in the text format.
func scrape(t *testing.T, url string) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	code, body := httpGet(t, url)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("GET %s: not a valid exposition: %v\n%s", url, err, body)
	}
	return fams, []byte(body)
}

// value returns the value of the series of family name whose labels
// include want, and whether there is one.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.Counter.GetValue(), true
		case dto.MetricType_GAUGE:
			return m.Gauge.GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(m.Histogram.GetSampleCount()), true
		case dto.MetricType_UNTYPED:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// labelNames returns the sorted label names of every series of a family,
// checking that all series have the same set.
func labelNames(t *testing.T, f *dto.MetricFamily) string {
	t.Helper()
	var first string
	for i, m := range f.Metric {
		var names []string
		for _, l := range m.Label {
			names = append(names, l.GetName())
		}
		slices.Sort(names)
		s := strings.Join(names, ",")
		if i == 0 {
			first = s
		} else if s != first {
			t.Errorf("%s: label sets differ: %s and %s", f.GetName(), first, s)
		}
	}
	return first
}

// promtool runs `promtool check metrics` on an exposition.
func promtool(t *testing.T, what string, exposition []byte) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is needed (Debian's prometheus package; `make test` installs it): %v", err)
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics on %s: %v\n%s", what, err, out)
	}
}

// The names, types and labels of /metrics from a real scrape, and values
// after real restarts, probe failures, CPU burnt and memory held.
func TestMetrics(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	w := start(t, config(t, fmt.Sprintf(`
- {name: burner, entrypoint: CHILD, args: [burn, 300ms, "48"]}
- {name: family, entrypoint: CHILD, args: [burn-children, "3", 150ms]}
- {name: crasher, entrypoint: CHILD, args: [burn, 200ms, "0", "3"]}
- name: web
  entrypoint: CHILD
  args: [serve, "127.0.0.1:%d"]
  readiness: {http: {port: %d, path: /}, periodSeconds: 1}
- name: flaky
  entrypoint: CHILD
  args: [sleep]
  liveness: {tcp: {socket: "127.0.0.1:1"}, periodSeconds: 1, failureThreshold: 1}
`, port, port)), opts{})
	base := w.url()
	var fams map[string]*dto.MetricFamily
	lastCPU := map[string]float64{}
	waitfor.Condition(t, 30*time.Second, "restarts, a liveness restart and the burns in the metrics", func() bool {
		fams, _ = scrape(t, base+"/metrics")
		// the CPU counters never go down, across exits and restarts
		for _, p := range []string{"burner", "family", "crasher"} {
			v, _ := value(fams, "process_wrapper_process_cpu_seconds_total", map[string]string{"process": p})
			if v < lastCPU[p] {
				t.Errorf("cpu of %s went down: %v then %v", p, lastCPU[p], v)
			}
			lastCPU[p] = v
		}
		crashes, _ := value(fams, "process_wrapper_process_restarts_total", map[string]string{"process": "crasher", "reason": "exit"})
		live, _ := value(fams, "process_wrapper_process_restarts_total", map[string]string{"process": "flaky", "reason": "liveness"})
		return crashes >= 2 && live >= 1 && lastCPU["family"] >= 0.4 && lastCPU["burner"] >= 0.25
	})
	// each of the crasher's runs burnt 200ms before exiting: the exited
	// runs' CPU is counted from wait4's rusage
	exits, _ := value(fams, "process_wrapper_process_exits_total", map[string]string{"process": "crasher", "code": "3"})
	if exits < 2 || lastCPU["crasher"] < 0.18*exits {
		t.Errorf("crasher: %v exits with code 3, %v CPU seconds (want >= 0.18 per exit)", exits, lastCPU["crasher"])
	}
	if starts, _ := value(fams, "process_wrapper_process_starts_total", map[string]string{"process": "crasher"}); starts < exits {
		t.Errorf("crasher: %v starts for %v exits", starts, exits)
	}
	if rss, _ := value(fams, "process_wrapper_process_resident_memory_bytes", map[string]string{"process": "burner"}); rss < 48<<20 {
		t.Errorf("burner holds 48 MiB, resident memory says %v", rss)
	}
	if pss, _ := value(fams, "process_wrapper_process_proportional_memory_bytes", map[string]string{"process": "burner"}); pss < 46<<20 {
		t.Errorf("burner holds 48 MiB, proportional memory says %v", pss)
	}
	if n, _ := value(fams, "process_wrapper_process_tree_processes", map[string]string{"process": "web"}); n != 1 {
		t.Errorf("web's tree: %v processes, want 1", n)
	}
	if n, _ := value(fams, "process_wrapper_probe_duration_seconds", map[string]string{"process": "web", "probe": "readiness", "kind": "http"}); n < 1 {
		t.Errorf("web's readiness probe: %v checks in the histogram", n)
	}
	if n, _ := value(fams, "process_wrapper_probe_failures_total", map[string]string{"process": "flaky", "probe": "liveness", "kind": "tcp"}); n < 1 {
		t.Errorf("flaky's liveness probe: %v failures", n)
	}
	if v, ok := value(fams, "process_wrapper_process_state", map[string]string{"process": "web", "state": "running"}); !ok || v != 1 {
		t.Errorf("web's state running = %v", v)
	}
	// kubelet asking /readiness while the crasher is down counts a failure
	before, _ := value(fams, "process_wrapper_readiness_failed_total", nil)
	waitfor.Condition(t, 10*time.Second, "a 503 of /readiness counted", func() bool {
		code, _ := httpGet(t, base+"/readiness")
		f, _ := scrape(t, base+"/metrics")
		after, _ := value(f, "process_wrapper_readiness_failed_total", nil)
		return code == 503 && after > before
	})

	want := map[string]struct {
		typ    dto.MetricType
		labels string
	}{
		"process_wrapper_process_up":                             {dto.MetricType_GAUGE, "process"},
		"process_wrapper_process_state":                          {dto.MetricType_GAUGE, "process,state"},
		"process_wrapper_process_ready":                          {dto.MetricType_GAUGE, "process"},
		"process_wrapper_process_live":                           {dto.MetricType_GAUGE, "process"},
		"process_wrapper_process_starts_total":                   {dto.MetricType_COUNTER, "process"},
		"process_wrapper_process_restarts_total":                 {dto.MetricType_COUNTER, "process,reason"},
		"process_wrapper_process_exits_total":                    {dto.MetricType_COUNTER, "code,process"},
		"process_wrapper_process_run_duration_seconds":           {dto.MetricType_HISTOGRAM, "process"},
		"process_wrapper_probe_duration_seconds":                 {dto.MetricType_HISTOGRAM, "kind,probe,process"},
		"process_wrapper_probe_failures_total":                   {dto.MetricType_COUNTER, "kind,probe,process"},
		"process_wrapper_readiness_failed_total":                 {dto.MetricType_COUNTER, ""},
		"process_wrapper_process_cpu_seconds_total":              {dto.MetricType_COUNTER, "process"},
		"process_wrapper_process_resident_memory_bytes":          {dto.MetricType_GAUGE, "process"},
		"process_wrapper_process_proportional_memory_bytes":      {dto.MetricType_GAUGE, "process"},
		"process_wrapper_process_state_change_timestamp_seconds": {dto.MetricType_GAUGE, "process"},
		"process_wrapper_process_suspended":                      {dto.MetricType_GAUGE, "process"},
		"process_wrapper_process_leftover_processes":             {dto.MetricType_GAUGE, "process"},
		"process_wrapper_ready":                                  {dto.MetricType_GAUGE, ""},
		"process_wrapper_preempted":                              {dto.MetricType_GAUGE, ""},
		"go_goroutines":                                          {dto.MetricType_GAUGE, ""},
		"process_resident_memory_bytes":                          {dto.MetricType_GAUGE, ""},
	}
	fams, body := scrape(t, base+"/metrics")
	for _, gone := range []string{"process_wrapper_process_restarts", "process_wrapper_process_state_since_seconds"} {
		if fams[gone] != nil {
			t.Errorf("%s: still exported (renamed or dropped, see the README's upgrade note)", gone)
		}
	}
	for name, w := range want {
		f := fams[name]
		if f == nil {
			t.Errorf("%s: missing", name)
			continue
		}
		if f.GetType() != w.typ || f.GetHelp() == "" {
			t.Errorf("%s: type %v help %q, want %v with a help", name, f.GetType(), f.GetHelp(), w.typ)
		}
		if got := labelNames(t, f); got != w.labels {
			t.Errorf("%s: labels %q, want %q", name, got, w.labels)
		}
	}
	promtool(t, "/metrics", body)

	// OpenMetrics when the scraper asks for it
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	req.Header.Set("Accept-Encoding", "gzip") // as Prometheus asks: the answer comes plain all the same
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	om, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") || !bytes.HasSuffix(om, []byte("# EOF\n")) {
		t.Errorf("OpenMetrics: content type %q, ends %q", ct, om[max(0, len(om)-20):])
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" {
		t.Errorf("/metrics answered with Content-Encoding %q: it is never compressed (README)", ce)
	}
	// a strict OpenMetrics parser takes the exposition whole: no gauge may
	// share a family name with a counter's (x and x_total are one family)
	dec := expfmt.NewDecoder(bytes.NewReader(om), expfmt.Format(resp.Header.Get("Content-Type")))
	for {
		var f dto.MetricFamily
		if err := dec.Decode(&f); err == io.EOF {
			break
		} else if err != nil {
			t.Errorf("OpenMetrics parser: %v", err)
			break
		}
	}
	w.signal(syscall.SIGTERM)
	w.wait(15 * time.Second)
}

// /prommerge: the wrapper's own families and its processes' expositions in
// one, each process's series labelled with its name (its own label of that
// name kept as exported_process); a target that fails is reported, not
// fatal; nothing in the request can add a target.
func TestPromMerge(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	expo := filepath.Join(dir, "app.prom")
	os.WriteFile(expo, []byte(`# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{code="200",process="worker-1"} 7
http_requests_total{code="500"} 1
# HELP queue_depth Items waiting.
# TYPE queue_depth gauge
queue_depth 3
`), 0o644)
	other := filepath.Join(dir, "other.prom")
	os.WriteFile(other, []byte("# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\"} 2\n"), 0o644)
	p1, p2, dead := freePort(t), freePort(t), freePort(t)
	var ssrf atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ssrf.Add(1) }))
	defer evil.Close()
	w := start(t, config(t, fmt.Sprintf(`
- {name: app, entrypoint: CHILD, args: [metrics, "127.0.0.1:%d", %q], metrics: {port: %d}}
- {name: side, entrypoint: CHILD, args: [metrics, "127.0.0.1:%d", %q], metrics: {port: %d, path: /stats}}
- {name: gone, entrypoint: CHILD, args: [sleep], metrics: {port: %d}}
`, p1, expo, p1, p2, other, p2, dead)), opts{})
	base := w.url()
	var fams map[string]*dto.MetricFamily
	var body []byte
	waitfor.Condition(t, 10*time.Second, "both targets up", func() bool {
		fams, body = scrape(t, base+"/prommerge?target="+evil.URL+"&url="+evil.URL)
		a, _ := value(fams, "prommerge_target_up", map[string]string{"process": "app"})
		s, _ := value(fams, "prommerge_target_up", map[string]string{"process": "side"})
		return a == 1 && s == 1
	})
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"process": "app", "exported_process": "worker-1", "code": "200"}, 7},
		{map[string]string{"process": "app", "code": "500"}, 1},
		{map[string]string{"process": "side", "code": "200"}, 2},
	} {
		if v, ok := value(fams, "http_requests_total", c.labels); !ok || v != c.want {
			t.Errorf("http_requests_total%v = %v (found %v), want %v", c.labels, v, ok, c.want)
		}
	}
	if n := len(fams["http_requests_total"].Metric); n != 3 {
		t.Errorf("http_requests_total: %d series, want 3 in one family", n)
	}
	if v, ok := value(fams, "prommerge_target_up", map[string]string{"process": "gone"}); !ok || v != 0 {
		t.Errorf("the target that does not answer: up %v (found %v)", v, ok)
	}
	if _, ok := value(fams, "process_wrapper_process_up", map[string]string{"process": "app"}); !ok {
		t.Error("the wrapper's own families are missing from /prommerge")
	}
	if n := ssrf.Load(); n != 0 {
		t.Errorf("a URL in the request was scraped %d times", n)
	}
	if bytes.Count(body, []byte("# TYPE http_requests_total ")) != 1 {
		t.Errorf("http_requests_total is not one contiguous family:\n%s", body)
	}
	promtool(t, "/prommerge", body)
	w.signal(syscall.SIGTERM)
	w.wait(15 * time.Second)
}

// Once its processes have started, the wrapper gives back the pages of its
// binary that only the start-up used (README "Figures").
func TestStartupPagesGivenBack(t *testing.T) {
	t.Parallel()
	// a copy of its own, installed as -install does (written back): the
	// kernel leaves alone the pages that another process maps (the other
	// tests run the same binary meanwhile) and the pages not yet written
	dir := t.TempDir()
	if out, err := exec.Command(wrapperBin, "-install", dir).CombinedOutput(); err != nil {
		t.Fatalf("-install: %v %s", err, out)
	}
	bin := filepath.Join(dir, "process-wrapper")
	w := start(t, config(t, "- {name: a, entrypoint: CHILD, args: [sleep]}\n"), opts{args: []string{"-debug"}, bin: bin})
	w.waitLine(10*time.Second, "msg", "gave back the binary's start-up pages")
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var fileKiB int64
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			fmt.Sscanf(strings.TrimSpace(v), "%d", &fileKiB)
		}
	}
	if fileKiB == 0 || fileKiB*1024 > fi.Size()/4 {
		t.Errorf("file-backed resident memory %d KiB after the page-out, for a binary of %d KiB", fileKiB, fi.Size()/1024)
	}
	w.signal(syscall.SIGTERM)
	w.wait(10 * time.Second)
}
