// Command up is make kube-up and make kube-down: the integration suite's
// cluster, for a person to use.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/process-wrapper/process-wrapper/integration/cluster"
)

func main() {
	dir := flag.String("dir", "", "the cluster's directory")
	kube := flag.String("kube", "", "the kube binary (make kube-bin)")
	etcd := flag.String("etcd", "etcd", "etcd's binary")
	cni := flag.String("cni", "/usr/lib/cni", "the CNI plugins' directory")
	flag.Parse()
	if err := cluster.BuildPause(".", *dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c, err := cluster.Start(context.Background(), cluster.Options{Dir: *dir, Kube: *kube, Etcd: *etcd, CNIBin: *cni})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
}
