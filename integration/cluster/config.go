package cluster

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"
)

// layout is where one cluster lives: its directories, its ports and its
// addresses, all of the run's own.
type layout struct {
	dir        string // the run's directory: everything of the cluster is under it
	sock       string // sockets (short paths: a unix socket path is limited to 108 bytes)
	bridge     string // the pod bridge's name
	gateway    net.IP // the bridge's host address: the API server listens there
	podCIDR    *net.IPNet
	serviceIP  net.IP // the kubernetes Service's cluster IP
	serviceNet *net.IPNet
	etcdPort   int
	apiPort    int
	kubeletAPI int    // the kubelet's own server, on 127.0.0.1
	dnsIP      net.IP // the kube-dns Service's cluster IP (the kubelet's clusterDNS)
	// the DNS serves on the bridge's host address at dnsPort (the Service's
	// endpoint), its health and readiness on 127.0.0.1
	dnsPort, dnsHealth, dnsReady int
	proxyHealth, proxyMetrics    int // kube-proxy's, on 127.0.0.1
}

func (l layout) path(elem ...string) string {
	return filepath.Join(append([]string{l.dir}, elem...)...)
}

// containerdConfig is the run's own containerd: its own root, state and
// sockets, the CRI plugin on the local pause image, and the two settings
// this kind of machine needs (root lacks CAP_SYS_RESOURCE, so the sandbox's
// oom_score_adj must not be lowered; no AppArmor).
func (l layout) containerdConfig(pauseImage string) []byte {
	return fmt.Appendf(nil, `version = 2
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  level = "warn"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, l.path("containerd", "root"), l.path("containerd", "state"), filepath.Join(l.sock, "containerd.sock"),
		filepath.Join(l.sock, "containerd.ttrpc.sock"), pauseImage, filepath.Join(l.sock, "runc"),
		l.path("cni", "bin"), l.path("cni", "conf"))
}

// cniConfig is the pod network: a bridge of the run's own with host-local
// addresses from podCIDR, no masquerade (nothing leaves the machine) and
// the portmap plugin left out (it would touch the host's iptables).
func (l layout) cniConfig() ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "pw-test",
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      l.bridge,
				"isGateway":   true,
				"ipMasq":      false,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": l.podCIDR.String(), "gateway": l.gateway.String()}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": l.path("cni", "ipam"),
				},
			},
			map[string]any{"type": "loopback"},
		},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("cni config: %w", err)
	}
	return b, nil
}

// kubeletConfig is the kubelet's configuration on this kind of machine:
// cgroup v1 with the cgroupfs driver, swap on, the run's containerd, its
// API on loopback only, no iptables chains of its own, image GC that keeps
// the imported images, and eviction thresholds a busy CI disk does not
// reach.
func (l layout) kubeletConfig(clientCA string) ([]byte, error) {
	f := false
	t := true
	zero := int32(0)
	gcHigh, gcLow := int32(100), int32(99)
	cfg := kubeletv1beta1.KubeletConfiguration{
		TypeMeta:                    metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		Address:                     "127.0.0.1",
		Port:                        int32(l.kubeletAPI),
		ReadOnlyPort:                zero,
		CgroupDriver:                "cgroupfs",
		FailSwapOn:                  &f,
		FailCgroupV1:                &f,
		ContainerRuntimeEndpoint:    "unix://" + filepath.Join(l.sock, "containerd.sock"),
		MakeIPTablesUtilChains:      &f,
		ImageGCHighThresholdPercent: &gcHigh,
		ImageGCLowThresholdPercent:  &gcLow,
		EvictionHard: map[string]string{
			"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%",
		},
		PodLogsDir:                l.path("pod-logs"),
		ClusterDomain:             "cluster.local",
		ClusterDNS:                []string{l.dnsIP.String()},
		ResolverConfig:            new(string), // no host resolv.conf: pods resolve through the cluster's DNS only
		SerializeImagePulls:       &t,
		SyncFrequency:             metav1.Duration{Duration: 10 * time.Second},
		FileCheckFrequency:        metav1.Duration{Duration: 10 * time.Second},
		NodeStatusUpdateFrequency: metav1.Duration{Duration: 10 * time.Second},
		Authentication: kubeletv1beta1.KubeletAuthentication{
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: clientCA},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: &t},
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: &f},
		},
		Authorization: kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubelet config: %w", err)
	}
	return b, nil
}

// kubeconfig is a client's view of the API server: the cluster's CA and
// a bearer token of the token file.
func kubeconfig(server, caFile, user, token string) []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: pw-test
  cluster: {server: %q, certificate-authority: %q}
users:
- name: %s
  user: {token: %q}
contexts:
- name: pw-test
  context: {cluster: pw-test, user: %s, namespace: default}
current-context: pw-test
`, server, caFile, user, token, user)
}
