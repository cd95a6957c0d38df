// Package chartrender renders the project's helm chart with the helm SDK,
// as helm template does, for the suites that check or apply it.
package chartrender

import (
	"fmt"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
)

// Render renders the chart in dir as release name in namespace, with vals
// over the chart's values; the result maps template names to their text.
func Render(dir, name, namespace string, vals map[string]any) (map[string]string, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", dir, err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: name, Namespace: namespace, IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("chart %s: values: %w", dir, err)
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return nil, fmt.Errorf("chart %s: render: %w", dir, err)
	}
	return out, nil
}

// Manifests splits rendered templates into their documents, in a stable
// order (by template name), leaving out documents of comments only and,
// as helm does, NOTES.txt (text for the user, see Notes).
func Manifests(out map[string]string) []string {
	names := make([]string, 0, len(out))
	for n := range out {
		if !strings.HasSuffix(n, "NOTES.txt") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var docs []string
	for _, n := range names {
		for _, d := range strings.Split(out[n], "\n---") {
			if strings.TrimSpace(stripComments(d)) != "" {
				docs = append(docs, strings.TrimSpace(d))
			}
		}
	}
	return docs
}

// Notes is the rendered NOTES.txt ("" without one).
func Notes(out map[string]string) string {
	for n, text := range out {
		if strings.HasSuffix(n, "/NOTES.txt") {
			return text
		}
	}
	return ""
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
