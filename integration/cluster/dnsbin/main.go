// Command dns is the test cluster's DNS: CoreDNS, built from
// github.com/coredns/coredns at the version of go.mod with only the
// plugins the cluster uses (the address it binds, cluster names from the
// API server, health and readiness; nothing is forwarded: no name
// resolves off the machine).
//
//	dns -conf Corefile
//
// It is not part of process-wrapper: the integration suite's cluster harness
// builds it (GOWORK=off, it is a module of its own) and runs it on the pod
// bridge's host address.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// the plugins' order in a server block, as CoreDNS's plugin.cfg has it
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "kubernetes"}
}

func main() { coremain.Run() }
