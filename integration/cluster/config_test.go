package cluster

import (
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"
)

func testLayout(t *testing.T) layout {
	_, pods, _ := net.ParseCIDR("198.18.7.0/24")
	_, svcs, _ := net.ParseCIDR("198.19.7.0/24")
	return layout{dir: t.TempDir(), sock: "/run/pw-kube-1", bridge: "pwkube0", gateway: net.ParseIP("198.18.7.1"),
		podCIDR: pods, serviceIP: net.ParseIP("198.19.7.1"), serviceNet: svcs, etcdPort: 23790, apiPort: 26443,
		kubeletAPI: 20250, dnsIP: net.ParseIP("198.19.7.10")}
}

// containerd reads its config as TOML: the settings this machine needs sit
// in the CRI plugin's table, where containerd 1.6 looks for them.
func TestContainerdConfig(t *testing.T) {
	l := testLayout(t)
	var cfg struct {
		Version int
		Root    string
		GRPC    struct{ Address string } `toml:"grpc"`
		Plugins map[string]struct {
			SandboxImage        string `toml:"sandbox_image"`
			DisableAppArmor     bool   `toml:"disable_apparmor"`
			RestrictOOMScoreAdj bool   `toml:"restrict_oom_score_adj"`
			CNI                 struct {
				BinDir  string `toml:"bin_dir"`
				ConfDir string `toml:"conf_dir"`
			} `toml:"cni"`
		} `toml:"plugins"`
	}
	md, err := toml.Decode(string(l.containerdConfig("pw-test/pause:1")), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	cri := cfg.Plugins["io.containerd.grpc.v1.cri"]
	if cfg.Version != 2 || !strings.HasPrefix(cfg.Root, l.dir) || cfg.GRPC.Address != "/run/pw-kube-1/containerd.sock" ||
		cri.SandboxImage != "pw-test/pause:1" || !cri.DisableAppArmor || !cri.RestrictOOMScoreAdj || !strings.HasPrefix(cri.CNI.ConfDir, l.dir) {
		t.Errorf("containerd config decoded as %+v", cfg)
	}
	if !md.IsDefined("plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes", "runc", "options", "SystemdCgroup") {
		t.Error("runc's SystemdCgroup is not set")
	}
}

// The kubelet's config decodes strictly into its own type, with what this
// kind of machine needs.
func TestKubeletConfig(t *testing.T) {
	l := testLayout(t)
	b, err := l.kubeletConfig("/x/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	var cfg kubeletv1beta1.KubeletConfiguration
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if cfg.Kind != "KubeletConfiguration" || cfg.CgroupDriver != "cgroupfs" || *cfg.FailSwapOn || *cfg.MakeIPTablesUtilChains ||
		cfg.Address != "127.0.0.1" || cfg.ReadOnlyPort != 0 || cfg.Authentication.X509.ClientCAFile != "/x/ca.crt" ||
		cfg.ClusterDNS[0] != "198.19.7.10" || !strings.HasPrefix(cfg.PodLogsDir, l.dir) {
		t.Errorf("kubelet config:\n%s", b)
	}
}

// The pod network is the run's own bridge and subnet, without masquerade.
func TestCNIConfig(t *testing.T) {
	l := testLayout(t)
	b, err := l.cniConfig()
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Plugins []struct {
			Type, Bridge string
			IPMasq       bool
			IPAM         struct {
				Ranges [][]struct{ Subnet, Gateway string }
			}
		}
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	br := conf.Plugins[0]
	if br.Type != "bridge" || br.Bridge != "pwkube0" || br.IPMasq || br.IPAM.Ranges[0][0].Subnet != "198.18.7.0/24" || br.IPAM.Ranges[0][0].Gateway != "198.18.7.1" {
		t.Errorf("cni config:\n%s", b)
	}
}
