// Package chart tests the helm chart without a cluster: every values example
// is rendered with the helm SDK and linted, every manifest is decoded
// strictly into its k8s.io/api type (an unknown field fails), the wrapper's
// config in it is loaded by the wrapper's own config package, and the
// default render is compared with a golden file (go test -update rewrites it).
package chart

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/process-wrapper/process-wrapper/integration/chartrender"
	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const chartDir = "../../charts/process-wrapper"

// examples are the values files rendered: the defaults and every ci/ file.
func examples(t *testing.T) []string {
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values examples in %s/ci: %v", chartDir, err)
	}
	return append([]string{""}, files...)
}

func render(t *testing.T, valuesFile string) map[string]string {
	t.Helper()
	vals := chartutil.Values{}
	if valuesFile != "" {
		var err error
		if vals, err = chartutil.ReadValuesFile(valuesFile); err != nil {
			t.Fatal(err)
		}
	}
	return renderValues(t, vals)
}

// renderValues renders the chart as release demo in namespace shop.
func renderValues(t *testing.T, vals map[string]any) map[string]string {
	t.Helper()
	out, err := chartrender.Render(chartDir, "demo", "shop", vals)
	if err != nil {
		t.Fatalf("render %v: %v", vals, err)
	}
	return out
}

// decodeStrict decodes a manifest into the k8s.io/api type of its kind;
// an unknown field anywhere is an error.
func decodeStrict(doc string) (any, error) {
	js, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		return nil, err
	}
	var meta struct{ APIVersion, Kind string }
	if err := json.Unmarshal(js, &meta); err != nil {
		return nil, err
	}
	var obj any
	switch meta.APIVersion + "/" + meta.Kind {
	case "apps/v1/Deployment":
		obj = &appsv1.Deployment{}
	case "batch/v1/Job":
		obj = &batchv1.Job{}
	case "v1/Service":
		obj = &corev1.Service{}
	case "v1/ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1/ServiceAccount":
		obj = &corev1.ServiceAccount{}
	case "v1/PersistentVolumeClaim":
		obj = &corev1.PersistentVolumeClaim{}
	case "rbac.authorization.k8s.io/v1/Role":
		obj = &rbacv1.Role{}
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		obj = &rbacv1.RoleBinding{}
	default:
		return nil, fmt.Errorf("unexpected kind %s %s", meta.APIVersion, meta.Kind)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return nil, fmt.Errorf("%s: %w", meta.Kind, err)
	}
	return obj, nil
}

// rendered is one example's objects by kind.
type rendered struct {
	pod        *corev1.PodSpec
	podMeta    map[string]string
	configMaps []*corev1.ConfigMap
	roles      []*rbacv1.Role
	services   []*corev1.Service
	kinds      []string
}

func decodeAll(t *testing.T, docs []string) rendered {
	t.Helper()
	var r rendered
	for _, d := range docs {
		obj, err := decodeStrict(d)
		if err != nil {
			t.Errorf("%v\n%s", err, d)
			continue
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			r.kinds = append(r.kinds, "Deployment/"+o.Name)
			if strings.HasSuffix(o.Name, "demo") {
				r.pod, r.podMeta = &o.Spec.Template.Spec, o.Spec.Template.Annotations
			}
		case *batchv1.Job:
			r.kinds = append(r.kinds, "Job/"+o.Name)
			r.pod, r.podMeta = &o.Spec.Template.Spec, o.Spec.Template.Annotations
		case *corev1.ConfigMap:
			r.kinds = append(r.kinds, "ConfigMap/"+o.Name)
			r.configMaps = append(r.configMaps, o)
		case *rbacv1.Role:
			r.kinds = append(r.kinds, "Role/"+o.Name)
			r.roles = append(r.roles, o)
		case *corev1.Service:
			r.kinds = append(r.kinds, "Service/"+o.Name)
			r.services = append(r.services, o)
		case *corev1.ServiceAccount:
			r.kinds = append(r.kinds, "ServiceAccount/"+o.Name)
		case *corev1.PersistentVolumeClaim:
			r.kinds = append(r.kinds, "PersistentVolumeClaim/"+o.Name)
		case *rbacv1.RoleBinding:
			r.kinds = append(r.kinds, "RoleBinding/"+o.Name)
		}
	}
	return r
}

func TestExamples(t *testing.T) {
	for _, f := range examples(t) {
		name := filepath.Base(f)
		if f == "" {
			name = "defaults"
		}
		t.Run(name, func(t *testing.T) {
			vals := map[string]any{}
			if f != "" {
				v, err := chartutil.ReadValuesFile(f)
				if err != nil {
					t.Fatal(err)
				}
				vals = v
			}
			linter := lint.All(chartDir, vals, "shop", true)
			for _, m := range linter.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("lint: %s", m)
				}
			}
			r := decodeAll(t, chartrender.Manifests(render(t, f)))
			if r.pod == nil {
				t.Fatalf("no workload among %v", r.kinds)
			}
			checkPod(t, r)
			// the wrapper's config is loaded as the wrapper loads it
			for _, cm := range r.configMaps {
				if src, ok := cm.Data["config.yaml"]; ok {
					if _, err := config.Parse(cm.Name, []byte(src)); err != nil {
						t.Errorf("the config of the values does not load: %v", err)
					}
				}
				if dash, ok := cm.Data["process-wrapper.json"]; ok {
					checkDashboard(t, dash)
				}
			}
		})
	}
}

// checkPod holds the rendered pod to what the README promises.
func checkPod(t *testing.T, r rendered) {
	t.Helper()
	pod := r.pod
	if len(pod.InitContainers) != 1 || !slices.Contains(pod.InitContainers[0].Args, "-install") {
		t.Errorf("init container: %+v", pod.InitContainers)
	}
	var app *corev1.Container
	for i := range pod.Containers {
		if len(pod.Containers[i].Command) == 1 && strings.HasSuffix(pod.Containers[i].Command[0], "/process-wrapper") {
			app = &pod.Containers[i]
		}
	}
	if app == nil {
		t.Fatalf("no container runs process-wrapper: %+v", pod.Containers)
	}
	grace := *pod.TerminationGracePeriodSeconds
	deadline := -1
	for _, a := range app.Args {
		if v, ok := strings.CutPrefix(a, "-graceful-shutdown-deadline="); ok {
			fmt.Sscanf(v, "%ds", &deadline)
		}
	}
	if deadline < 1 || int64(deadline) >= grace {
		t.Errorf("-graceful-shutdown-deadline %ds against terminationGracePeriodSeconds %d", deadline, grace)
	}
	env := map[string]*corev1.EnvVar{}
	for i := range app.Env {
		env[app.Env[i].Name] = &app.Env[i]
	}
	for _, n := range []string{"POD_NAME", "POD_NAMESPACE", "NODE_NAME"} {
		if env[n] == nil || env[n].ValueFrom == nil || env[n].ValueFrom.FieldRef == nil {
			t.Errorf("%s is not from the downward API", n)
		}
	}
	if app.ReadinessProbe == nil || app.ReadinessProbe.HTTPGet.Path != "/readiness" || app.LivenessProbe == nil || app.LivenessProbe.HTTPGet.Path != "/liveness" {
		t.Errorf("probes: readiness %+v liveness %+v", app.ReadinessProbe, app.LivenessProbe)
	}
	if env["HANDLE_PREEMPTION"] != nil && (app.ReadinessProbe.PeriodSeconds != 1 || app.ReadinessProbe.FailureThreshold != 1) {
		t.Errorf("preemption on: readiness probe every %ds, failureThreshold %d; want 1 and 1", app.ReadinessProbe.PeriodSeconds, app.ReadinessProbe.FailureThreshold)
	}
	// kubelet's liveness leaves the wrapper time to heal (README)
	if p := app.LivenessProbe; p.PeriodSeconds*p.FailureThreshold < int32(deadline)+10 {
		t.Errorf("liveness %ds x %d is shorter than the wrapper's heal time", p.PeriodSeconds, p.FailureThreshold)
	}
	if env["HANDLE_TERMINATION"] != nil {
		ok := false
		for _, role := range r.roles {
			for _, rule := range role.Rules {
				if slices.Contains(rule.Resources, "pods") && slices.Equal(rule.Verbs, []string{"get", "list", "watch"}) {
					ok = true
				}
			}
		}
		if !ok || pod.ServiceAccountName == "" {
			t.Errorf("HANDLE_TERMINATION without a Role on pods (get, list, watch) for its service account: %v", r.kinds)
		}
	}
	if a, ok := r.podMeta["prometheus.io/port"]; ok && a != "8111" {
		t.Errorf("scrape port %s", a)
	}
}

var metricName = regexp.MustCompile(`\b(process_wrapper_[a-z_]+|go_[a-z_]+|process_[a-z_]+)\b`)

// checkDashboard: valid JSON whose queries name metrics the wrapper has.
func checkDashboard(t *testing.T, src string) {
	t.Helper()
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal([]byte(src), &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	known, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Panels) < 8 {
		t.Errorf("dashboard: %d panels", len(d.Panels))
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_count"), "_sum")
				if strings.HasPrefix(base, "process_wrapper_") && !strings.Contains(string(known), "`"+base) && !strings.Contains(string(known), base+"`") {
					t.Errorf("dashboard panel %q: %s is not a metric of the README's table", p.Title, m)
				}
			}
		}
	}
}

// The default render, byte for byte (go test -update rewrites it).
func TestGolden(t *testing.T) {
	got := strings.Join(chartrender.Manifests(render(t, "")), "\n---\n") + "\n"
	golden := filepath.Join("testdata", "default.golden.yaml")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("the default render differs from %s (go test -update rewrites it after a wanted change):\n%s", golden, got)
	}
}

// Values the chart refuses, with a message naming them.
func TestBadValues(t *testing.T) {
	for _, c := range []struct {
		vals map[string]any
		want string
	}{
		{map[string]any{"wrapper": map[string]any{"gracefulShutdownDeadline": "30s"}}, "must stay below workload.terminationGracePeriodSeconds (30)"},
		{map[string]any{"wrapper": map[string]any{"gracefulShutdownDeadline": "1m"}}, "at '/wrapper/gracefulShutdownDeadline': '1m' does not match pattern"},
		{map[string]any{"wrapper": map[string]any{"prememption": map[string]any{"enabled": true}}}, "at '/wrapper': additional properties 'prememption' not allowed"},
		{map[string]any{"wrapper": map[string]any{"config": "name: web\nentrypoint: /app/server\n"}}, "wrapper.config: want the wrapper's config, a YAML list of processes"},
		{map[string]any{"wrapper": map[string]any{"config": 3}}, "at '/wrapper/config': got number, want string or array"},
		{map[string]any{"app": map[string]any{"preStopSeconds": 10}, "wrapper": map[string]any{"gracefulShutdownDeadline": "20s"}}, "less the preStop hook's 10 s"},
		{map[string]any{"workload": map[string]any{"terminationGracePeriodSeconds": 10}, "app": map[string]any{"preStopSeconds": 5}}, "leaves the wrapper under 1 s"},
		{map[string]any{"wrapper": map[string]any{"probes": map[string]any{"liveness": map[string]any{"periodSeconds": 10, "failureThreshold": 2}}}}, "must exceed the 26 s the wrapper needs"},
		{map[string]any{"workload": map[string]any{"kind": "StatefulSet"}}, "at '/workload/kind': value must be one of 'Deployment', 'Job'"},
		{map[string]any{"workload": map[string]any{"kind": "Job", "jobRestartPolicy": "Always"}}, "at '/workload/jobRestartPolicy': value must be one of 'Never', 'OnFailure'"},
		{map[string]any{"sharedLock": map[string]any{"enabled": true, "replicas": 2}}, "sharedLock.replicas: want 1 with the embedded etcd"},
		{map[string]any{"sharedLock": map[string]any{"enabled": true, "etcdEndpoints": "http://etcd:2379", "replicas": 0}}, "sharedLock.replicas"},
	} {
		if _, err := chartrender.Render(chartDir, "demo", "shop", c.vals); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.vals, err, c.want)
		}
	}
}

// The shared-lock server runs one replica on its embedded etcd (with its
// claim, recreated rather than rolled), and as many as asked on an etcd
// cluster (no claim).
func TestSharedLockReplicas(t *testing.T) {
	for _, c := range []struct {
		file     string
		replicas int32
		claim    bool
	}{
		{filepath.Join(chartDir, "ci", "external-etcd.yaml"), 2, false},
		{filepath.Join(chartDir, "ci", "preemption-local.yaml"), 1, true},
	} {
		var lock *appsv1.Deployment
		claims := 0
		for _, d := range chartrender.Manifests(render(t, c.file)) {
			obj, err := decodeStrict(d)
			if err != nil {
				t.Fatal(err)
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				if strings.HasSuffix(o.Name, "-shared-lock") {
					lock = o
				}
			case *corev1.PersistentVolumeClaim:
				claims++
			}
		}
		if lock == nil {
			t.Fatalf("%s: no shared-lock Deployment", c.file)
		}
		if *lock.Spec.Replicas != c.replicas || (claims == 1) != c.claim || (lock.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType) != c.claim {
			t.Errorf("%s: %d replicas, %d claims, strategy %q", c.file, *lock.Spec.Replicas, claims, lock.Spec.Strategy.Type)
		}
	}
}

// sharedLock.tokenSecret gives the server SHARED_LEASE_TOKEN_FILE and the
// app's wrapper -shared-lock-token-file, both from the user's Secret.
func TestSharedLockToken(t *testing.T) {
	file := filepath.Join(chartDir, "ci", "shared-lock-token.yaml")
	var lock *appsv1.Deployment
	for _, d := range chartrender.Manifests(render(t, file)) {
		if obj, err := decodeStrict(d); err == nil {
			if o, ok := obj.(*appsv1.Deployment); ok && strings.HasSuffix(o.Name, "-shared-lock") {
				lock = o
			}
		}
	}
	if lock == nil {
		t.Fatal("no shared-lock Deployment")
	}
	secretMounted := func(spec *corev1.PodSpec, c corev1.Container) bool {
		for _, v := range spec.Volumes {
			if v.Secret != nil && v.Secret.SecretName == "shop-shared-lock-token" {
				for _, m := range c.VolumeMounts {
					if m.Name == v.Name && m.MountPath == "/var/run/shared-lock" && m.ReadOnly {
						return true
					}
				}
			}
		}
		return false
	}
	server := lock.Spec.Template.Spec.Containers[0]
	hasEnv := false
	for _, e := range server.Env {
		hasEnv = hasEnv || (e.Name == "SHARED_LEASE_TOKEN_FILE" && e.Value == "/var/run/shared-lock/token")
	}
	if !hasEnv || !secretMounted(&lock.Spec.Template.Spec, server) {
		t.Errorf("the server lacks the token: env %v, mounts %v", server.Env, server.VolumeMounts)
	}
	r := decodeAll(t, chartrender.Manifests(render(t, file)))
	app := r.pod.Containers[0]
	if !slices.Contains(app.Args, "-shared-lock-token-file=/var/run/shared-lock/token") || !secretMounted(r.pod, app) {
		t.Errorf("the app's wrapper lacks the token: args %v, mounts %v", app.Args, app.VolumeMounts)
	}
}

// renderPod renders the chart with vals and returns its Deployment's pod.
func renderPod(t *testing.T, vals map[string]any) corev1.PodSpec {
	t.Helper()
	for _, d := range chartrender.Manifests(renderValues(t, vals)) {
		obj, err := decodeStrict(d)
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := obj.(*appsv1.Deployment); ok && o.Name == "demo" {
			return o.Spec.Template.Spec
		}
	}
	t.Fatal("no workload Deployment")
	return corev1.PodSpec{}
}

// The deadline leaves kubelet's preStop hook its time, and kubelet's
// liveness window on /liveness leaves the wrapper the time to heal one
// process: the longest liveness window of wrapper.config + the deadline +
// 1 s, with one period to spare (README "Sizing kubelet's probes").
func TestDeadlineAndLivenessSizing(t *testing.T) {
	probed := "- name: web\n  entrypoint: /bin/web\n  liveness: {http: {port: 80}, periodSeconds: 5, failureThreshold: 8}\n" +
		"- name: db\n  entrypoint: /bin/db\n  liveness: {tcp: {port: 5432}}\n"
	for _, c := range []struct {
		name      string
		vals      map[string]any
		deadline  string
		threshold int32
	}{
		// 30 - 5; needs 25 + 1 = 26 s: 3 periods of 10 s cover it, plus one
		{"defaults", map[string]any{}, "25s", 4},
		// the grace of 120 s of the issue: 115 + 1 s needs 12 periods, plus one
		{"long grace", map[string]any{"workload": map[string]any{"terminationGracePeriodSeconds": 120}}, "115s", 13},
		// a preStop sleep of 10 s: 60 - 10 - 5
		{"preStop sleep", map[string]any{"workload": map[string]any{"terminationGracePeriodSeconds": 60},
			"app": map[string]any{"lifecycle": map[string]any{"preStop": map[string]any{"sleep": map[string]any{"seconds": 10}}}}}, "45s", 6},
		// an exec preStop says how long it takes
		{"preStopSeconds", map[string]any{"app": map[string]any{"preStopSeconds": 8,
			"lifecycle": map[string]any{"preStop": map[string]any{"exec": map[string]any{"command": []any{"/bin/drain"}}}}}}, "17s", 3},
		// web's window 5 x 8 = 40 s is the longest (db's default is 10 x 3): 40 + 25 + 1 = 66 s
		{"process windows", map[string]any{"wrapper": map[string]any{"config": probed}}, "25s", 8},
		// given and enough: kept
		{"given", map[string]any{"wrapper": map[string]any{"probes": map[string]any{"liveness": map[string]any{"periodSeconds": 5, "failureThreshold": 9}}}}, "25s", 9},
	} {
		t.Run(c.name, func(t *testing.T) {
			pod := renderPod(t, c.vals)
			app := pod.Containers[0]
			if !slices.Contains(app.Args, "-graceful-shutdown-deadline="+c.deadline) {
				t.Errorf("args %v, want the deadline %s", app.Args, c.deadline)
			}
			if got := app.LivenessProbe.FailureThreshold; got != c.threshold {
				t.Errorf("liveness failureThreshold %d, want %d", got, c.threshold)
			}
		})
	}
}

// The init container installs into a directory of its own (an emptyDir
// mounted on the binary's own directory hid it: exit 127 under kubelet),
// with resources and a restricted securityContext from values.
func TestInstaller(t *testing.T) {
	pod := renderPod(t, map[string]any{})
	ic := pod.InitContainers[0]
	if len(ic.VolumeMounts) != 1 || ic.VolumeMounts[0].MountPath != "/install" || !slices.Equal(ic.Args, []string{"-install", "/install"}) {
		t.Errorf("init container mounts %v, args %v: want the emptyDir at /install, installed there", ic.VolumeMounts, ic.Args)
	}
	if ic.Resources.Limits.Memory().IsZero() || ic.Resources.Requests.Cpu().IsZero() {
		t.Errorf("init container resources %v: want requests and limits", ic.Resources)
	}
	sc := ic.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("init container securityContext %+v: want restricted", sc)
	}
	app := pod.Containers[0]
	if app.Command[0] != "/process-wrapper/process-wrapper" {
		t.Errorf("app command %v", app.Command)
	}
	pod = renderPod(t, map[string]any{"wrapper": map[string]any{"installer": map[string]any{
		"resources": map[string]any{"limits": map[string]any{"memory": "32Mi"}}, "securityContext": map[string]any{"runAsUser": 1000}}}})
	ic = pod.InitContainers[0]
	if ic.Resources.Limits.Memory().String() != "32Mi" || ic.SecurityContext == nil || ic.SecurityContext.RunAsUser == nil || *ic.SecurityContext.RunAsUser != 1000 {
		t.Errorf("installer values not applied: %v %+v", ic.Resources, ic.SecurityContext)
	}
}
