package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"
)

// The API server's certificate verifies, with the cluster's CA alone, for
// every address pods and the host reach it by; a client certificate carries
// its user and groups for RBAC.
func TestAuthority(t *testing.T) {
	ca, err := newAuthority()
	if err != nil {
		t.Fatal(err)
	}
	bridge := net.ParseIP("198.18.0.1")
	service := net.ParseIP("198.19.0.1")
	srv, err := ca.issue("kube-apiserver", nil, []net.IP{bridge, service}, []string{"kubernetes", "kubernetes.default.svc"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(srv.cert, srv.key); err != nil {
		t.Fatalf("the serving pair does not load: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca.pem) {
		t.Fatal("the CA does not load")
	}
	blk, _ := pem.Decode(srv.cert)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"198.18.0.1", "198.19.0.1", "kubernetes.default.svc"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "10.0.0.1"}); err == nil {
		t.Error("verified for an address it does not name")
	}
	cl, err := ca.issue("kube-apiserver-kubelet-client", []string{"system:masters"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ = pem.Decode(cl.cert)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != "kube-apiserver-kubelet-client" || len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != "system:masters" {
		t.Errorf("client subject %v", c.Subject)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, _, err := serviceAccountKey(t.TempDir()); err != nil {
		t.Fatal(err)
	}
}
