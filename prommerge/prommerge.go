// Package prommerge scrapes several Prometheus targets concurrently and
// merges their expositions into one: families of the same name become one
// contiguous family, each target's series get a label that tells them apart
// (a target's own label of that name becomes exported_<name>, as Prometheus
// does), conflicts of TYPE are resolved and reported in metrics rather than
// breaking the exposition, and a target that fails does not fail the answer.
package prommerge

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

// Target is one exposition to scrape. Targets come from configuration,
// never from a request.
type Target struct {
	Name string // the value of the distinguishing label
	URL  string
}

// Result is one target's scrape.
type Result struct {
	Target   Target
	Families map[string]*dto.MetricFamily
	Err      error
	Duration time.Duration
}

// Merger scrapes and merges.
type Merger struct {
	Label   string        // the distinguishing label's name; "target" when empty
	Timeout time.Duration // per target; a caller's X-Prometheus-Scrape-Timeout-Seconds lowers it
	Client  *http.Client
}

func (m *Merger) label() string {
	if m.Label == "" {
		return "target"
	}
	return m.Label
}

// ScrapeTimeout returns the per-target timeout for a request that carries
// Prometheus' X-Prometheus-Scrape-Timeout-Seconds: a little under it, and
// never above the Merger's own.
func (m *Merger) ScrapeTimeout(r *http.Request) time.Duration {
	t := m.Timeout
	if t <= 0 {
		t = 10 * time.Second
	}
	if v, err := strconv.ParseFloat(r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds"), 64); err == nil && v > 0 {
		caller := time.Duration(v*float64(time.Second)) - 250*time.Millisecond // leave time to merge and answer
		if caller < t {
			t = max(caller, 100*time.Millisecond)
		}
	}
	return t
}

// Scrape asks every target at once, each bounded by timeout, for the text
// format, and parses the answers.
func (m *Merger) Scrape(ctx context.Context, targets []Target, timeout time.Duration) []Result {
	client := m.Client
	if client == nil {
		client = http.DefaultClient
	}
	results := make([]Result, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			began := time.Now()
			fams, err := scrape(ctx, client, t.URL, timeout)
			results[i] = Result{Target: t, Families: fams, Err: err, Duration: time.Since(began)}
		}()
	}
	wg.Wait()
	return results
}

func scrape(ctx context.Context, client *http.Client, url string, timeout time.Duration) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	fams, err := Parse(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err) // a half-parsed target is left out whole
	}
	return fams, nil
}

// Parse reads a text exposition.
func Parse(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// Report says what a merge resolved: the families whose TYPE differed
// between sources (the first source's type wins; the others' series of that
// family are left out), and the series left out for it.
type Report struct {
	Conflicts map[string]int // family name -> series left out
}

// Merge merges own (the merging program's own families, which come first
// and keep their labels) with the targets' results into one set of
// families, sorted by name, and adds the prommerge_* families that report
// each target's health and the conflicts.
func (m *Merger) Merge(own []*dto.MetricFamily, results []Result) ([]*dto.MetricFamily, Report) {
	label := m.label()
	exported := "exported_" + label
	merged := make(map[string]*dto.MetricFamily, len(own)+64)
	rep := Report{Conflicts: map[string]int{}}
	for _, f := range own {
		merged[f.GetName()] = f
	}
	for _, res := range results {
		names := make([]string, 0, len(res.Families))
		for n := range res.Families {
			names = append(names, n)
		}
		sort.Strings(names) // deterministic: the first source in target order wins
		for _, n := range names {
			f := res.Families[n]
			dst, ok := merged[n]
			if !ok {
				dst = &dto.MetricFamily{Name: f.Name, Help: f.Help, Type: f.Type, Unit: f.Unit}
				merged[n] = dst
			} else if dst.GetType() != f.GetType() {
				rep.Conflicts[n] += len(f.Metric)
				continue
			}
			for _, metric := range f.Metric {
				metric.Label = relabel(metric.Label, label, exported, res.Target.Name)
				dst.Metric = append(dst.Metric, metric)
			}
		}
	}
	out := make([]*dto.MetricFamily, 0, len(merged)+3)
	for _, f := range merged {
		out = append(out, f)
	}
	out = append(out, m.health(results, rep)...)
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, rep
}

// relabel adds label=value after a series' own labels, renaming its own
// label of that name to exported (and an own exported one to
// exported_exported, and so on). No map, no sort: a series has few labels.
func relabel(labels []*dto.LabelPair, label, exported, value string) []*dto.LabelPair {
	for _, l := range labels {
		if l.GetName() == label {
			n := exported
			for hasLabel(labels, n) {
				n = "exported_" + n
			}
			l.Name = proto.String(n)
		}
	}
	return append(labels, &dto.LabelPair{Name: proto.String(label), Value: proto.String(value)})
}

func hasLabel(labels []*dto.LabelPair, name string) bool {
	for _, l := range labels {
		if l.GetName() == name {
			return true
		}
	}
	return false
}

func gauge(name, help string) *dto.MetricFamily {
	return &dto.MetricFamily{Name: proto.String(name), Help: proto.String(help), Type: dto.MetricType_GAUGE.Enum()}
}

func (m *Merger) health(results []Result, rep Report) []*dto.MetricFamily {
	up := gauge("prommerge_target_up", "1 when the target's last scrape succeeded and parsed, 0 otherwise.")
	dur := gauge("prommerge_target_scrape_duration_seconds", "How long the target's last scrape took.")
	for _, r := range results {
		v := 1.0
		if r.Err != nil {
			v = 0
		}
		lp := []*dto.LabelPair{{Name: proto.String(m.label()), Value: proto.String(r.Target.Name)}}
		up.Metric = append(up.Metric, &dto.Metric{Label: lp, Gauge: &dto.Gauge{Value: proto.Float64(v)}})
		dur.Metric = append(dur.Metric, &dto.Metric{Label: lp, Gauge: &dto.Gauge{Value: proto.Float64(r.Duration.Seconds())}})
	}
	fams := []*dto.MetricFamily{up, dur}
	if len(rep.Conflicts) > 0 {
		c := gauge("prommerge_type_conflict_series", "Series left out of the last merge because their family's TYPE differed from the first source's.")
		names := make([]string, 0, len(rep.Conflicts))
		for n := range rep.Conflicts {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			c.Metric = append(c.Metric, &dto.Metric{Label: []*dto.LabelPair{{Name: proto.String("family"), Value: proto.String(n)}},
				Gauge: &dto.Gauge{Value: proto.Float64(float64(rep.Conflicts[n]))}})
		}
		fams = append(fams, c)
	}
	return fams
}

// Write writes families in the text format.
func Write(w io.Writer, fams []*dto.MetricFamily) error {
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if len(f.Metric) == 0 {
			continue
		}
		if err := enc.Encode(f); err != nil {
			return fmt.Errorf("family %s: %w", f.GetName(), err)
		}
	}
	return nil
}

// Gatherer is the merging program's own registry (a prometheus.Gatherer).
type Gatherer interface {
	Gather() ([]*dto.MetricFamily, error)
}

// Handler serves, on each request, own's families merged with the targets'
// (scraped then, each bounded by ScrapeTimeout of the request), in the text
// format. The targets are fixed here: nothing in a request can name one.
func (m *Merger) Handler(own Gatherer, targets []Target) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var fams []*dto.MetricFamily
		if own != nil {
			// a registry that fails in part still returns what it gathered
			fams, _ = own.Gather()
		}
		merged, _ := m.Merge(fams, m.Scrape(r.Context(), targets, m.ScrapeTimeout(r)))
		w.Header().Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
		_ = Write(w, merged)
	})
}
