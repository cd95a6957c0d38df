// Command up is make kube-up and make kube-down: the integration suite's
// cluster, for a person to use. It prints the export of KUBECONFIG.
//
//	go run ./cluster/up -dir D -kube K -dns D [-import IMG,...] make kube-up
//	go run ./cluster/up -down                                   make kube-down
//
// With -hold the cluster is this process's own, as a test run's is: it
// runs until the process is signalled (SIGTERM, SIGINT: torn down), or is
// killed and leaves it for the next run to remove (the suite tests that).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/process-wrapper/process-wrapper/integration/cluster"
)

func main() {
	dir := flag.String("dir", "", "the cluster's directory")
	kube := flag.String("kube", "", "the kube binary (make kube-bin)")
	etcd := flag.String("etcd", "etcd", "etcd's binary")
	cni := flag.String("cni", "/usr/lib/cni", "the CNI plugins' directory")
	dns := flag.String("dns", "", "the DNS binary, CoreDNS (make kube-bin)")
	down := flag.Bool("down", false, "tear down make kube-up's cluster (or what a killed run left)")
	hold := flag.Bool("hold", false, "the cluster lives as long as this process")
	images := flag.String("import", "", "Docker images to import into the cluster's containerd, comma-separated")
	flag.Parse()
	if *down {
		if err := cluster.Down(); err != nil {
			fail(err)
		}
		return
	}
	if *dir == "" || *kube == "" || *dns == "" {
		fail(fmt.Errorf("up: -dir, -kube and -dns are required"))
	}
	if err := cluster.BuildPause(".", *dir); err != nil {
		fail(err)
	}
	c, err := cluster.Start(context.Background(), cluster.Options{Dir: *dir, Kube: *kube, Etcd: *etcd, CNIBin: *cni, DNS: *dns, Keep: !*hold})
	if err != nil {
		fail(err)
	}
	if *images != "" {
		if err := c.ImportImages(strings.Split(*images, ",")...); err != nil {
			fail(fmt.Errorf("%w (cluster left running: make kube-down removes it)", err))
		}
	}
	if err := c.WaitNodeReady(context.Background()); err != nil {
		fail(fmt.Errorf("%w (cluster left running: make kube-down removes it)", err))
	}
	fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
	if *hold {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		if err := c.Stop(); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
