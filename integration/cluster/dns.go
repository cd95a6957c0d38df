package cluster

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// dnsUser is the DNS's user in the token file.
const dnsUser = "system:pw-dns"

// startDNS runs the cluster's DNS: CoreDNS's kubernetes plugin answers for
// cluster.local from the API server, on the bridge's host address at a
// port of the run's own. The kube-dns Service (the kubelet's clusterDNS
// address, port 53) has that address and port as its one endpoint, so
// pods reach it through kube-proxy as they reach any Service. Names off
// the cluster are not answered: nothing leaves the machine.
func (c *Cluster) startDNS(ctx context.Context, bin, kubeconfig string) error {
	if bin == "" {
		return fmt.Errorf("cluster: no DNS binary (Options.DNS: make kube-bin builds it)")
	}
	cs, err := c.Client()
	if err != nil {
		return err
	}
	l := c.l
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "pw:dns"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services", "endpoints", "namespaces", "pods"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pw:dns"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "pw:dns"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: dnsUser}},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: "kube-system", Labels: map[string]string{"k8s-app": "kube-dns"}},
		Spec: corev1.ServiceSpec{ClusterIP: l.dnsIP.String(), Ports: []corev1.ServicePort{
			{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt(l.dnsPort)},
			{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: intstr.FromInt(l.dnsPort)},
		}},
	}
	udp, tcp, port := corev1.ProtocolUDP, corev1.ProtocolTCP, int32(l.dnsPort)
	dnsName, dnsTCPName := "dns", "dns-tcp"
	readyTrue := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "kube-dns-host", Namespace: "kube-system", Labels: map[string]string{discoveryv1.LabelServiceName: "kube-dns"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{l.gateway.String()}, Conditions: discoveryv1.EndpointConditions{Ready: &readyTrue}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &dnsName, Protocol: &udp, Port: &port}, {Name: &dnsTCPName, Protocol: &tcp, Port: &port}},
	}
	opts := metav1.CreateOptions{FieldManager: "process-wrapper-cluster"}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, opts); err != nil {
		return fmt.Errorf("cluster: the DNS's role: %w", err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, opts); err != nil {
		return fmt.Errorf("cluster: the DNS's role binding: %w", err)
	}
	if _, err := cs.CoreV1().Services("kube-system").Create(ctx, svc, opts); err != nil {
		return fmt.Errorf("cluster: the kube-dns Service: %w", err)
	}
	if _, err := cs.DiscoveryV1().EndpointSlices("kube-system").Create(ctx, slice, opts); err != nil {
		return fmt.Errorf("cluster: the kube-dns endpoints: %w", err)
	}
	corefile := fmt.Sprintf(`.:%d {
    bind %s
    errors
    health 127.0.0.1:%d
    ready 127.0.0.1:%d
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s pw-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
}
`, l.dnsPort, l.gateway, l.dnsHealth, l.dnsReady, kubeconfig)
	if err := os.WriteFile(l.path("Corefile"), []byte(corefile), 0o644); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if _, err := startComponent(l.dir, "dns", nil, bin, "-conf", l.path("Corefile")); err != nil {
		return err
	}
	ready := fmt.Sprintf("http://127.0.0.1:%d/ready", l.dnsReady)
	if !waitfor.Poll(60*time.Second, func() bool {
		resp, err := http.Get(ready)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		return fmt.Errorf("cluster: the DNS did not become ready within 60 s (%s)", l.path("logs", "dns.log"))
	}
	return nil
}
