package chart

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	"github.com/process-wrapper/process-wrapper/integration/chartrender"
)

// everything on: every object the chart can make
var everything = map[string]any{
	"wrapper":    map[string]any{"termination": map[string]any{"enabled": true}, "preemption": map[string]any{"enabled": true}},
	"sharedLock": map[string]any{"enabled": true},
	"mocks":      map[string]any{"metadata": map[string]any{"enabled": true}, "metrics": map[string]any{"enabled": true}},
}

// pods are the pod templates of a render, by their workload's name.
func pods(t *testing.T, out map[string]string) map[string]corev1.PodTemplateSpec {
	t.Helper()
	got := map[string]corev1.PodTemplateSpec{}
	for _, d := range chartrender.Manifests(out) {
		obj, err := decodeStrict(d)
		if err != nil {
			t.Fatal(err)
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			got[o.Name] = o.Spec.Template
		case *batchv1.Job:
			got[o.Name] = o.Spec.Template
		}
	}
	return got
}

// Every name the chart makes is a DNS label of at most 63 characters, and
// stays unique, even for a release name at the limit with everything on.
func TestNamesFit(t *testing.T) {
	release := strings.Repeat("r", 53) // helm allows 53
	out, err := chartrender.Render(chartDir, release, "shop", everything)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, d := range chartrender.Manifests(out) {
		var m struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(d), &m); err != nil {
			t.Fatal(err)
		}
		if errs := validation.IsDNS1123Label(m.Metadata.Name); len(errs) > 0 {
			t.Errorf("%s %q: %v", m.Kind, m.Metadata.Name, errs)
		}
		if key := m.Kind + "/" + m.Metadata.Name; seen[key] {
			t.Errorf("two objects named %s", key)
		} else {
			seen[key] = true
		}
	}
}

// The chart's images take its appVersion as their tag unless they name
// one (or a digest); imagePullSecrets reach every pod; every pod carries
// the chart's labels beyond its selector's.
func TestImagesAndLabels(t *testing.T) {
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &chart); err != nil || chart.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion: %q %v", chart.AppVersion, err)
	}
	vals := map[string]any{"imagePullSecrets": []any{map[string]any{"name": "regcred"}}}
	for k, v := range everything {
		vals[k] = v
	}
	got := pods(t, renderValues(t, vals))
	if len(got) != 4 {
		t.Fatalf("want the workload, the shared-lock server and two mocks, got %v", slices.Sorted(maps.Keys(got)))
	}
	for name, p := range got {
		if len(p.Spec.ImagePullSecrets) != 1 || p.Spec.ImagePullSecrets[0].Name != "regcred" {
			t.Errorf("%s: imagePullSecrets %v", name, p.Spec.ImagePullSecrets)
		}
		if p.Labels["app.kubernetes.io/version"] != chart.AppVersion || p.Labels["helm.sh/chart"] == "" || p.Labels["app.kubernetes.io/managed-by"] == "" {
			t.Errorf("%s: pod labels %v lack the chart's", name, p.Labels)
		}
		for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
			if c.Name == "app" {
				continue // the user's image, as given
			}
			if !strings.HasSuffix(c.Image, ":"+chart.AppVersion) || !strings.HasPrefix(c.Image, "process-wrapper/") {
				t.Errorf("%s/%s: image %q, want process-wrapper/...:%s", name, c.Name, c.Image, chart.AppVersion)
			}
		}
	}
	for given, want := range map[string]string{
		"registry:5000/pw/process-wrapper":            "registry:5000/pw/process-wrapper:" + chart.AppVersion,
		"registry:5000/pw/process-wrapper:1.2":        "registry:5000/pw/process-wrapper:1.2",
		"process-wrapper/process-wrapper@sha256:abcd": "process-wrapper/process-wrapper@sha256:abcd",
	} {
		spec := renderPod(t, map[string]any{"wrapper": map[string]any{"image": given}})
		if got := spec.InitContainers[0].Image; got != want {
			t.Errorf("wrapper.image %q rendered %q, want %q", given, got, want)
		}
	}
}

// wrapper.config may be given as the list of processes itself, not only
// as YAML text: the ConfigMap then holds that list.
func TestConfigAsList(t *testing.T) {
	list := []any{map[string]any{"name": "web", "entrypoint": "/app/server", "args": []any{"--port", "8080"}}}
	r := decodeAll(t, chartrender.Manifests(renderValues(t, map[string]any{"wrapper": map[string]any{"config": list}})))
	for _, cm := range r.configMaps {
		if cm.Name != "demo-config" {
			continue
		}
		var got []any
		if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &got); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(list) {
			t.Errorf("config.yaml %v, want %v", got, list)
		}
		return
	}
	t.Fatal("no ConfigMap demo-config")
}

// NOTES.txt tells a new user where to look: the port-forward to the
// wrapper's endpoints and the logs, with the release's own names.
func TestNotes(t *testing.T) {
	notes := chartrender.Notes(renderValues(t, everything))
	for _, want := range []string{"port-forward deployment/demo 8111", "curl localhost:8111/readiness", "logs deployment/demo -c app", "http://demo-shared-lock:8191", "svc/demo-metadata-mock 8989", "within 25 s"} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, notes)
		}
	}
}

// Every value of values.yaml matters: set to something else (with
// everything on, so that no value is hidden behind a switch), each leaf
// changes the render, or is refused with a message naming it.
func TestEveryValueMatters(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var defaults map[string]any
	if err := yaml.Unmarshal(b, &defaults); err != nil {
		t.Fatal(err)
	}
	base := merge(defaults, everything)
	// the values that only a setting other than everything-on shows
	contexts := map[string]map[string]any{
		"workload.backoffLimit":     {"workload": map[string]any{"kind": "Job"}},
		"workload.jobRestartPolicy": {"workload": map[string]any{"kind": "Job"}},
		// under preemption, kubelet's readiness probe runs every second, once
		"wrapper.probes.readiness.failureThreshold": {"wrapper": map[string]any{"preemption": map[string]any{"enabled": false}}},
		"wrapper.probes.readiness.periodSeconds":    {"wrapper": map[string]any{"preemption": map[string]any{"enabled": false}}},
	}
	var paths [][]string
	leaves(base, nil, &paths)
	sort.Slice(paths, func(i, j int) bool { return strings.Join(paths[i], ".") < strings.Join(paths[j], ".") })
	for _, p := range paths {
		key := strings.Join(p, ".")
		start := merge(base, contexts[key])
		// a switch off is its own case: from everything on, turning it off
		// must change the render too
		startOut, err := chartrender.Render(chartDir, "demo", "shop", start)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		want := strings.Join(chartrender.Manifests(startOut), "\n---\n")
		vals := merge(start, nil)
		changed := mutate(vals, p)
		if changed == nil {
			t.Errorf("%s: no other value to try", key)
			continue
		}
		out, err := chartrender.Render(chartDir, "demo", "shop", vals)
		if err != nil {
			if !strings.Contains(err.Error(), p[len(p)-1]) {
				t.Errorf("%s=%v: refused without naming it: %v", key, changed, err)
			}
			continue
		}
		if got := strings.Join(chartrender.Manifests(out), "\n---\n"); got == want {
			t.Errorf("%s=%v: the render does not change: the value is not used", key, changed)
		}
	}
}

// leaves collects the paths of the values' leaves (maps are walked; lists,
// scalars and empty maps are leaves).
func leaves(v any, path []string, out *[][]string) {
	if m, ok := v.(map[string]any); ok && len(m) > 0 {
		for k, sub := range m {
			leaves(sub, append(slices.Clone(path), k), out)
		}
		return
	}
	*out = append(*out, path)
}

// mutate replaces the leaf at path by another value of its kind, and
// returns it (nil when it has none).
func mutate(vals map[string]any, path []string) any {
	m := vals
	for _, k := range path[:len(path)-1] {
		m = m[k].(map[string]any)
	}
	k := path[len(path)-1]
	var v any
	switch old := m[k].(type) {
	case bool:
		v = !old
	case float64:
		v = old + 7
	case int:
		v = old + 7
	case string:
		switch {
		case k == "config":
			v = "- name: other\n  entrypoint: /bin/other\n"
		case k == "gracefulShutdownDeadline":
			v = "9s"
		case k == "path" && old == "/prommerge":
			v = "/metrics"
		case k == "kind":
			v = "Job"
		case k == "jobRestartPolicy":
			v = "OnFailure"
		case k == "imagePullPolicy":
			v = "Always"
		case strings.HasSuffix(k, "URL"):
			v = "http://example.test:1234/x"
		case k == "metricsServerAddress" || k == "etcdEndpoints":
			v = "example.test:2379"
		case k == "installDir":
			v = "/opt/pw"
		default:
			v = old + "x"
		}
	case []any:
		switch k {
		case "imagePullSecrets":
			v = append(slices.Clone(old), map[string]any{"name": "other"})
		case "extraContainers":
			v = append(slices.Clone(old), map[string]any{"name": "other", "image": "other:1"})
		case "tolerations":
			v = append(slices.Clone(old), map[string]any{"key": "other", "operator": "Exists"})
		case "ports":
			v = append(slices.Clone(old), map[string]any{"name": "other", "containerPort": 9999})
		case "env":
			v = append(slices.Clone(old), map[string]any{"name": "OTHER", "value": "1"})
		default:
			v = append(slices.Clone(old), "other")
		}
	case map[string]any: // an empty map
		switch k {
		case "resources":
			v = map[string]any{"limits": map[string]any{"memory": "1Gi"}}
		case "securityContext":
			v = map[string]any{"runAsUser": 1234}
		case "lifecycle":
			v = map[string]any{"postStart": map[string]any{"exec": map[string]any{"command": []any{"true"}}}}
		case "affinity":
			v = map[string]any{"nodeAffinity": map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{"nodeSelectorTerms": []any{map[string]any{"matchExpressions": []any{map[string]any{"key": "k", "operator": "Exists"}}}}}}}
		default:
			v = map[string]any{"other": "x"}
		}
	case nil:
		if k == "preStopSeconds" {
			v = 3
		}
	}
	if v != nil {
		m[k] = v
	}
	return v
}

// merge deep-copies a and lays b over it.
func merge(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		if m, ok := v.(map[string]any); ok {
			out[k] = merge(m, nil)
		} else {
			out[k] = v
		}
	}
	for k, v := range b {
		if m, ok := v.(map[string]any); ok {
			if om, ok := out[k].(map[string]any); ok {
				out[k] = merge(om, m)
				continue
			}
			out[k] = merge(m, nil)
		} else {
			out[k] = v
		}
	}
	return out
}

// ci/restricted.yaml's pods pass restricted Pod Security, as the API
// server's own admission code evaluates it (the cluster suite applies the
// chart to a restricted namespace too).
func TestRestrictedExample(t *testing.T) {
	vals, err := chartutil.ReadValuesFile(filepath.Join(chartDir, "ci", "restricted.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := pods(t, renderValues(t, vals))
	if len(got) != 4 {
		t.Fatalf("want 4 pods, got %v", slices.Sorted(maps.Keys(got)))
	}
	for name, p := range got {
		res := policy.AggregateCheckResults(eval.EvaluatePod(psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}, &p.ObjectMeta, &p.Spec))
		if !res.Allowed {
			t.Errorf("%s: refused by restricted Pod Security: %s", name, res.ForbiddenDetail())
		}
	}
}
