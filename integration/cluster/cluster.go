package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// Options say what the cluster is built from.
type Options struct {
	Dir    string // the run's directory (created; everything of the cluster goes under it)
	Kube   string // the kube binary (make kube-bin)
	Etcd   string // etcd's binary
	CNIBin string // the CNI plugins' directory
	DNS    string // the DNS binary, CoreDNS (make kube-bin)
	Keep   bool   // make kube-up's: the cluster outlives this process, until Down
}

// Cluster is a running single-node cluster.
type Cluster struct {
	l          layout
	st         hostState
	Kubeconfig string // the admin's
	Server     string
	caPEM      []byte
	adminToken string
}

// cniPlugins are the CNI plugins the pod network uses.
var cniPlugins = []string{"bridge", "host-local", "loopback"}

// Start brings up the cluster; on an error, what it started is stopped.
func Start(ctx context.Context, o Options) (c *Cluster, err error) {
	// what the host must have, checked before anything is changed: a pod
	// without its network plugin waits in ContainerCreating for ever
	for _, plugin := range cniPlugins {
		if fi, err := os.Stat(filepath.Join(o.CNIBin, plugin)); err != nil || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("cluster: the CNI plugin %s is not in %s (Debian's containernetworking-plugins; .ci/run installs it)", plugin, o.CNIBin)
		}
	}
	l, err := newLayout(o.Dir)
	if err != nil {
		return nil, err
	}
	st, err := claim(l, o.Kube, o.Keep)
	if err != nil {
		return nil, err
	}
	c = &Cluster{l: l, st: st}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()
	for _, d := range []string{"pki", "etcd", "cni/bin", "cni/conf", "cni/ipam", "kubelet", "pod-logs", "containerd"} {
		if err := os.MkdirAll(l.path(d), 0o755); err != nil {
			return c, fmt.Errorf("cluster: %w", err)
		}
	}
	if err := os.MkdirAll(l.sock, 0o755); err != nil {
		return c, fmt.Errorf("cluster: %w", err)
	}
	if err := run("ip", "link", "add", l.bridge, "type", "bridge"); err != nil {
		return c, err
	}
	if err := run("ip", "addr", "add", l.gateway.String()+"/"+strconv.Itoa(ones(l.podCIDR)), "dev", l.bridge); err != nil {
		return c, err
	}
	if err := run("ip", "link", "set", l.bridge, "up"); err != nil {
		return c, err
	}
	// traffic between pods, and to a Service's pod, is forwarded by the
	// host, whose FORWARD policy may drop it (Docker sets DROP)
	for _, rule := range forwardRules(l.bridge) {
		if err := run("iptables", append([]string{"-I", "FORWARD", "1"}, rule...)...); err != nil {
			return c, err
		}
	}

	ca, err := newAuthority()
	if err != nil {
		return c, err
	}
	c.caPEM = ca.pem
	caFile := l.path("pki", "ca.crt")
	if err := os.WriteFile(caFile, ca.pem, 0o644); err != nil {
		return c, fmt.Errorf("cluster: %w", err)
	}
	serving, err := ca.issue("kube-apiserver", nil, []net.IP{l.gateway, l.serviceIP},
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"})
	if err != nil {
		return c, err
	}
	srvCrt, srvKey, err := serving.write(l.path("pki"), "apiserver")
	if err != nil {
		return c, err
	}
	kc, err := ca.issue("kube-apiserver-kubelet-client", []string{"system:masters"}, nil, nil)
	if err != nil {
		return c, err
	}
	kcCrt, kcKey, err := kc.write(l.path("pki"), "kubelet-client")
	if err != nil {
		return c, err
	}
	saKey, saPub, err := serviceAccountKey(l.path("pki"))
	if err != nil {
		return c, err
	}
	tokens := map[string]string{}
	var tokenFile strings.Builder
	for _, u := range []struct{ name, group string }{
		{"admin", "system:masters"},
		{"system:node:localhost", "system:nodes"},
		{"system:kube-controller-manager", ""},
		{"system:kube-scheduler", ""},
		{"system:kube-proxy", ""}, // bound to system:node-proxier by the API server's defaults
		{dnsUser, ""},             // bound to the DNS's role by startDNS
	} {
		tok := randomToken()
		tokens[u.name] = tok
		fmt.Fprintf(&tokenFile, "%s,%s,%s,%q\n", tok, u.name, u.name, u.group)
	}
	if err := os.WriteFile(l.path("pki", "tokens.csv"), []byte(tokenFile.String()), 0o600); err != nil {
		return c, fmt.Errorf("cluster: %w", err)
	}
	c.adminToken = tokens["admin"]
	c.Server = fmt.Sprintf("https://%s", net.JoinHostPort(l.gateway.String(), strconv.Itoa(l.apiPort)))
	kubeconfigs := map[string]string{}
	for user, tok := range tokens {
		p := l.path(strings.NewReplacer(":", "-").Replace(user) + ".kubeconfig")
		if err := os.WriteFile(p, kubeconfig(c.Server, caFile, strings.NewReplacer(":", "-").Replace(user), tok), 0o600); err != nil {
			return c, fmt.Errorf("cluster: %w", err)
		}
		kubeconfigs[user] = p
	}
	c.Kubeconfig = kubeconfigs["admin"]

	// etcd
	peer, err := freePort()
	if err != nil {
		return c, err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", l.etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	if _, err := startComponent(l.dir, "etcd", []string{"ETCD_UNSUPPORTED_ARCH="}, o.Etcd, "--name", "pw", "--data-dir", l.path("etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "pw="+peerURL, "--log-level", "warn"); err != nil {
		return c, err
	}

	// containerd
	if err := os.WriteFile(l.path("containerd.toml"), l.containerdConfig(PauseImage), 0o644); err != nil {
		return c, fmt.Errorf("cluster: %w", err)
	}
	if _, err := startComponent(l.dir, "containerd", nil, "containerd", "--config", l.path("containerd.toml")); err != nil {
		return c, err
	}
	if err := waitSocket(filepath.Join(l.sock, "containerd.sock"), 30*time.Second); err != nil {
		return c, fmt.Errorf("containerd (%s): %w", l.path("logs", "containerd.log"), err)
	}
	if err := c.ImportImages(PauseImage); err != nil {
		return c, err
	}
	for _, plugin := range cniPlugins {
		if err := os.Symlink(filepath.Join(o.CNIBin, plugin), l.path("cni", "bin", plugin)); err != nil {
			return c, fmt.Errorf("cluster: %w", err)
		}
	}
	cni, err := l.cniConfig()
	if err != nil {
		return c, err
	}
	if err := os.WriteFile(l.path("cni", "conf", "10-pw.conflist"), cni, 0o644); err != nil {
		return c, fmt.Errorf("cluster: %w", err)
	}

	// the API server
	if _, err := startComponent(l.dir, "apiserver", nil, o.Kube, "apiserver",
		"--etcd-servers", etcdURL,
		"--bind-address", l.gateway.String(), "--advertise-address", l.gateway.String(),
		"--secure-port", strconv.Itoa(l.apiPort),
		"--tls-cert-file", srvCrt, "--tls-private-key-file", srvKey, "--client-ca-file", caFile,
		"--kubelet-client-certificate", kcCrt, "--kubelet-client-key", kcKey,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", saPub, "--service-account-signing-key-file", saKey,
		"--token-auth-file", l.path("pki", "tokens.csv"),
		"--authorization-mode", "Node,RBAC",
		"--service-cluster-ip-range", l.serviceNet.String(),
		"--cert-dir", l.path("pki", "apiserver-certs"),
		"--profiling=false"); err != nil {
		return c, err
	}
	if err := c.waitHTTP(ctx, "/readyz", 90*time.Second); err != nil {
		return c, fmt.Errorf("the API server did not become ready (%s): %w", l.path("logs", "apiserver.log"), err)
	}
	if _, err := startComponent(l.dir, "controller-manager", nil, o.Kube, "controller-manager",
		"--kubeconfig", kubeconfigs["system:kube-controller-manager"],
		"--use-service-account-credentials", "--service-account-private-key-file", saKey,
		"--root-ca-file", caFile, "--leader-elect=false", "--controllers=*,-bootstrapsigner,-tokencleaner",
		"--secure-port=0", "--cluster-signing-cert-file", caFile); err != nil {
		return c, err
	}
	if _, err := startComponent(l.dir, "scheduler", nil, o.Kube, "scheduler",
		"--kubeconfig", kubeconfigs["system:kube-scheduler"], "--leader-elect=false", "--secure-port=0"); err != nil {
		return c, err
	}
	kcfg, err := l.kubeletConfig(caFile)
	if err != nil {
		return c, err
	}
	if err := os.WriteFile(l.path("kubelet.yaml"), kcfg, 0o644); err != nil {
		return c, fmt.Errorf("cluster: %w", err)
	}
	if _, err := startComponent(l.dir, "kubelet", nil, o.Kube, "kubelet",
		"--config", l.path("kubelet.yaml"), "--kubeconfig", kubeconfigs["system:node:localhost"],
		"--root-dir", l.path("kubelet"), "--cert-dir", l.path("kubelet", "pki"),
		"--hostname-override", "localhost"); err != nil {
		return c, err
	}
	// kube-proxy: a Service's cluster IP reaches its endpoints, in the
	// nftables tables of its own (removed at teardown); the conntrack
	// limits and timeouts of the host are left alone, node ports are only
	// on the bridge's host address
	if _, err := startComponent(l.dir, "proxy", nil, o.Kube, "proxy",
		"--kubeconfig", kubeconfigs["system:kube-proxy"], "--proxy-mode", "nftables",
		"--hostname-override", "localhost", "--cluster-cidr", l.podCIDR.String(),
		"--nodeport-addresses", l.gateway.String()+"/32",
		"--healthz-bind-address", fmt.Sprintf("127.0.0.1:%d", l.proxyHealth),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", l.proxyMetrics),
		"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0"); err != nil {
		return c, err
	}
	if err := c.startDNS(ctx, o.DNS, kubeconfigs[dnsUser]); err != nil {
		return c, err
	}
	return c, nil
}

// PauseImage is the sandbox image the harness builds and imports.
const PauseImage = "process-wrapper-test/pause:1"

// Stop tears the cluster down and restores what it changed on the host.
func (c *Cluster) Stop() error { return teardown(c.st) }

// Down tears down make kube-up's cluster, or what a killed run left; it
// refuses a cluster whose run still goes on.
func Down() error {
	if err := os.MkdirAll(registryDir, 0o755); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := readState()
	if err != nil || st == nil {
		return err
	}
	if st.Owner != 0 && startTime(st.Owner) == st.OwnerStart {
		return fmt.Errorf("cluster: the cluster in %s belongs to the run of pid %d, which goes on", st.Dir, st.Owner)
	}
	return teardown(*st)
}

func (c *Cluster) waitHTTP(ctx context.Context, path string, timeout time.Duration) error {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(c.caPEM)
	cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	var last error
	if !waitfor.Poll(timeout, func() bool {
		last = c.get(ctx, cl, path)
		return last == nil || ctx.Err() != nil
	}) || last != nil {
		return fmt.Errorf("%s: %w", path, last)
	}
	return nil
}

func (c *Cluster) get(ctx context.Context, cl *http.Client, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Server+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.adminToken)
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return nil
}

func newLayout(dir string) (layout, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return layout{}, fmt.Errorf("cluster: %w", err)
	}
	n := 1 + os.Getpid()%250
	_, pods, _ := net.ParseCIDR(fmt.Sprintf("198.18.%d.0/24", n))
	_, svcs, _ := net.ParseCIDR(fmt.Sprintf("198.19.%d.0/24", n))
	l := layout{dir: abs, sock: filepath.Join(registryDir, strconv.Itoa(os.Getpid())), bridge: fmt.Sprintf("pwkube%d", n),
		gateway: net.IPv4(198, 18, byte(n), 1), podCIDR: pods, serviceIP: net.IPv4(198, 19, byte(n), 1), serviceNet: svcs,
		dnsIP: net.IPv4(198, 19, byte(n), 10)}
	for _, p := range []*int{&l.etcdPort, &l.apiPort, &l.kubeletAPI, &l.dnsPort, &l.dnsHealth, &l.dnsReady, &l.proxyHealth, &l.proxyMetrics} {
		if *p, err = freePort(); err != nil {
			return layout{}, err
		}
	}
	return l, nil
}

func ones(n *net.IPNet) int { o, _ := n.Mask.Size(); return o }

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("cluster: a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func randomToken() string {
	b := make([]byte, 16)
	rand.Read(b) // crypto/rand: never fails on Linux
	return hex.EncodeToString(b)
}
