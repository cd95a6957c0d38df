// Package podwatch follows the wrapper's own pod through the Kubernetes API
// (HANDLE_TERMINATION): when every container it follows has terminated for
// good, the wrapper's processes (sidecars of a Job) must end too, or the Job
// never completes.
//
// It speaks the API over net/http with the service account's token and
// small structs holding the few fields it reads: client-go would add 8 to 24
// MB to a binary that is injected into other images (see the README).
package podwatch

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/wrapper/retry"
)

// DefaultServiceAccountDir is where kubelet mounts the service account's
// token and the cluster's CA.
const DefaultServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// Config says which pod to follow and how to reach the API.
type Config struct {
	APIServer string // https://host:port, from KUBERNETES_SERVICE_HOST and _PORT
	TokenFile string // read again for each request: bound tokens are rotated
	CAFile    string
	Namespace string // POD_NAMESPACE
	Pod       string // POD_NAME, or HOSTNAME
	Own       string // CONTAINER_NAME: the wrapper's own container, never followed
	Follow    []string
	// Resync bounds each watch: the pod is listed again after it (and after
	// any break of the stream). Zero: 5 minutes.
	Resync time.Duration
}

// ConfigFromEnv reads the configuration of HANDLE_TERMINATION. Every missing
// piece is an error that names the variable or the file.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		Namespace: getenv("POD_NAMESPACE"),
		Pod:       getenv("POD_NAME"),
		Own:       getenv("CONTAINER_NAME"),
	}
	if c.Pod == "" {
		// HOSTNAME is the pod's name unless hostNetwork or spec.hostname
		// changed it: POD_NAME from the downward API is the sure way
		c.Pod = getenv("HOSTNAME")
	}
	for _, n := range strings.Split(getenv("TERMINATION_FOLLOW_CONTAINERS"), ",") {
		if n = strings.TrimSpace(n); n != "" {
			c.Follow = append(c.Follow, n)
		}
	}
	var missing []string
	if c.Namespace == "" {
		missing = append(missing, "POD_NAMESPACE (downward API: metadata.namespace)")
	}
	if c.Pod == "" {
		missing = append(missing, "POD_NAME (downward API: metadata.name) or HOSTNAME")
	}
	if c.Own == "" && len(c.Follow) == 0 {
		missing = append(missing, "CONTAINER_NAME (the wrapper's own container, which the downward API cannot give) or TERMINATION_FOLLOW_CONTAINERS")
	}
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		missing = append(missing, "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT (set by kubelet in every pod)")
	}
	if len(missing) > 0 {
		return c, fmt.Errorf("HANDLE_TERMINATION=true needs %s", strings.Join(missing, ", "))
	}
	c.APIServer = "https://" + net.JoinHostPort(host, port)
	dir := getenv("SERVICE_ACCOUNT_DIR")
	if dir == "" {
		dir = DefaultServiceAccountDir
	}
	c.TokenFile, c.CAFile = filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	for _, f := range []string{c.TokenFile, c.CAFile} {
		if _, err := os.Stat(f); err != nil {
			return c, fmt.Errorf("HANDLE_TERMINATION=true needs the service account's credentials (automountServiceAccountToken): %w", err)
		}
	}
	return c, nil
}

// The few fields of a Pod read here, named as in k8s.io/api/core/v1.
type pod struct {
	Metadata struct {
		Name            string `json:"name"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Spec struct {
		RestartPolicy string `json:"restartPolicy"`
		Containers    []struct {
			Name string `json:"name"`
		} `json:"containers"`
	} `json:"spec"`
	Status struct {
		ContainerStatuses []containerStatus `json:"containerStatuses"`
	} `json:"status"`
}

type containerStatus struct {
	Name  string `json:"name"`
	State struct {
		Running    *struct{} `json:"running"`
		Waiting    *struct{} `json:"waiting"`
		Terminated *struct {
			ExitCode int    `json:"exitCode"`
			Reason   string `json:"reason"`
		} `json:"terminated"`
	} `json:"state"`
}

type podList struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Items []pod `json:"items"`
}

type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// status is a metav1.Status: the body of API errors and of ERROR events.
type status struct {
	Code    int    `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// Watcher follows the pod.
type Watcher struct {
	cfg    Config
	log    *logline.Logger
	client *http.Client
	follow []string // resolved at Start
}

// New returns a watcher; Start checks that it can do its job.
func New(cfg Config, log *logline.Logger) (*Watcher, error) {
	ca, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("service account CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("service account CA %s: no PEM certificate in it", cfg.CAFile)
	}
	if cfg.Resync == 0 {
		cfg.Resync = 5 * time.Minute
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialContext: (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext, TLSHandshakeTimeout: 10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second, IdleConnTimeout: 90 * time.Second}
	return &Watcher{cfg: cfg, log: log, client: &http.Client{Transport: tr}}, nil
}

// Start lists the pod once: a denied request (RBAC), a pod that is not
// found or followed containers that the pod does not have are errors here,
// before any process starts. It returns the containers followed.
func (w *Watcher) Start(ctx context.Context) ([]string, error) {
	p, _, err := w.list(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(p.Spec.Containers))
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	if w.cfg.Own != "" && !slices.Contains(names, w.cfg.Own) {
		return nil, fmt.Errorf("CONTAINER_NAME %q is not a container of pod %s/%s (it has %s)", w.cfg.Own, w.cfg.Namespace, w.cfg.Pod, strings.Join(names, ", "))
	}
	if len(w.cfg.Follow) > 0 {
		for _, f := range w.cfg.Follow {
			if !slices.Contains(names, f) {
				return nil, fmt.Errorf("TERMINATION_FOLLOW_CONTAINERS names %q, which is not a container of pod %s/%s (it has %s)", f, w.cfg.Namespace, w.cfg.Pod, strings.Join(names, ", "))
			}
		}
		w.follow = w.cfg.Follow
	} else {
		for _, n := range names {
			if n != w.cfg.Own {
				w.follow = append(w.follow, n)
			}
		}
	}
	if len(w.follow) == 0 {
		return nil, fmt.Errorf("pod %s/%s has no container to follow but the wrapper's own (%s)", w.cfg.Namespace, w.cfg.Pod, w.cfg.Own)
	}
	return w.follow, nil
}

// Done reports whether every followed container of p has terminated for
// good, given the pod's restartPolicy: under Never any termination is
// final; under OnFailure only an exit 0 is (kubelet restarts the others);
// under Always nothing is.
func Done(p *pod, follow []string) (bool, string) {
	for _, name := range follow {
		i := slices.IndexFunc(p.Status.ContainerStatuses, func(s containerStatus) bool { return s.Name == name })
		if i < 0 {
			return false, name + " has no status yet"
		}
		t := p.Status.ContainerStatuses[i].State.Terminated
		switch {
		case t == nil:
			return false, name + " is not terminated"
		case p.Spec.RestartPolicy == "Always" || p.Spec.RestartPolicy == "":
			return false, name + " terminated, and the pod's restartPolicy Always restarts it"
		case p.Spec.RestartPolicy == "OnFailure" && t.ExitCode != 0:
			return false, fmt.Sprintf("%s exited %d, and the pod's restartPolicy OnFailure restarts it", name, t.ExitCode)
		}
	}
	return true, "every followed container terminated: " + strings.Join(follow, ", ")
}

// Run follows the pod until every followed container has terminated for
// good (it then returns true) or ctx ends (false). It lists, then watches
// from the list's resourceVersion, and lists again after each watch ends
// or breaks, with backoff and jitter when the API fails.
func (w *Watcher) Run(ctx context.Context) bool {
	backoff := retry.Backoff{Initial: time.Second, Max: 30 * time.Second}
	trouble := ""
	for ctx.Err() == nil {
		p, rv, err := w.list(ctx)
		if err == nil {
			if done, why := Done(p, w.follow); done {
				w.log.Info("pod watch: "+why, "pod", w.cfg.Namespace+"/"+w.cfg.Pod)
				return true
			}
			var done bool
			done, err = w.watch(ctx, rv)
			if done {
				return true
			}
		}
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			backoff.Reset()
			trouble = ""
			continue // the watch ended at its timeout: resync
		}
		if kind := errKind(err); kind != trouble {
			trouble = kind
			w.log.Warn("pod watch: retrying with backoff", "err", err)
		}
		if !backoff.Wait(ctx) {
			return false
		}
	}
	return false
}

func errKind(err error) string {
	var se *statusError
	if errors.As(err, &se) {
		return fmt.Sprint(se.code)
	}
	return "network"
}

type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

func (w *Watcher) path() string {
	return "/api/v1/namespaces/" + url.PathEscape(w.cfg.Namespace) + "/pods"
}

func (w *Watcher) query(extra url.Values) string {
	q := url.Values{"fieldSelector": {"metadata.name=" + w.cfg.Pod}}
	for k, v := range extra {
		q[k] = v
	}
	return q.Encode()
}

func (w *Watcher) get(ctx context.Context, rawQuery string) (*http.Response, error) {
	token, err := os.ReadFile(w.cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("service account token: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.cfg.APIServer+w.path()+"?"+rawQuery, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+string(bytes.TrimSpace(token)))
	req.Header.Set("Accept", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("kubernetes API: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var st status
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		_ = json.Unmarshal(b, &st)
		msg := st.Message
		if msg == "" {
			msg = strings.TrimSpace(string(b))
		}
		hint := ""
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			hint = " (the service account token was refused)"
		case http.StatusForbidden:
			hint = fmt.Sprintf(" (RBAC: the pod's service account needs get, list and watch on pods in namespace %s; the chart's Role grants them)", w.cfg.Namespace)
		}
		return nil, &statusError{code: resp.StatusCode, msg: fmt.Sprintf("kubernetes API: GET %s: %d %s%s", w.path(), resp.StatusCode, msg, hint)}
	}
	return resp, nil
}

// list returns the pod and the list's resourceVersion.
func (w *Watcher) list(ctx context.Context) (*pod, string, error) {
	resp, err := w.get(ctx, w.query(nil))
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	var l podList
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&l); err != nil {
		return nil, "", fmt.Errorf("kubernetes API: list pods: %w", err)
	}
	if len(l.Items) != 1 {
		return nil, "", &statusError{code: http.StatusNotFound, msg: fmt.Sprintf("kubernetes API: pod %s/%s not found (POD_NAME from the downward API names it; HOSTNAME differs under hostNetwork or spec.hostname)", w.cfg.Namespace, w.cfg.Pod)}
	}
	return &l.Items[0], l.Metadata.ResourceVersion, nil
}

// watch follows the pod from rv until it is done (true), the watch ends at
// its timeout (false, nil) or breaks (an error).
func (w *Watcher) watch(ctx context.Context, rv string) (bool, error) {
	// the server ends the watch at timeoutSeconds; a connection that died
	// without a word (a partition) ends here a little later
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Resync+30*time.Second)
	defer cancel()
	resp, err := w.get(ctx, w.query(url.Values{"watch": {"1"}, "resourceVersion": {rv}, "allowWatchBookmarks": {"true"},
		"timeoutSeconds": {fmt.Sprint(int(w.cfg.Resync.Seconds()))}}))
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev watchEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) || (ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded)) {
				return false, nil // ended: resync
			}
			return false, fmt.Errorf("kubernetes API: watch broke: %w", err)
		}
		switch ev.Type {
		case "ADDED", "MODIFIED":
			var p pod
			if err := json.Unmarshal(ev.Object, &p); err != nil {
				return false, fmt.Errorf("kubernetes API: watch event: %w", err)
			}
			if done, why := Done(&p, w.follow); done {
				w.log.Info("pod watch: "+why, "pod", w.cfg.Namespace+"/"+w.cfg.Pod)
				return true, nil
			}
		case "DELETED":
			// kubelet stops the wrapper's container itself
			w.log.Info("pod watch: the pod is being deleted", "pod", w.cfg.Namespace+"/"+w.cfg.Pod)
		case "BOOKMARK":
		case "ERROR":
			var st status
			_ = json.Unmarshal(ev.Object, &st)
			return false, &statusError{code: st.Code, msg: fmt.Sprintf("kubernetes API: watch: %d %s %s", st.Code, st.Reason, st.Message)}
		}
	}
}
