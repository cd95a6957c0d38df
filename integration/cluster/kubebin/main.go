// Command kube is the test cluster's Kubernetes in one binary, built from
// k8s.io/kubernetes at the version of go.mod, so that its packages are
// compiled and linked once: the first argument names the component.
//
//	kube apiserver|controller-manager|scheduler|kubelet|proxy|kubectl [flags]
//
// It is not part of process-wrapper: the integration suite's cluster harness
// builds it (GOWORK=off, it is a module of its own) and runs it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	kubectl "k8s.io/kubectl/pkg/cmd"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controller "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kube apiserver|controller-manager|scheduler|kubelet|proxy|kubectl [flags]")
		os.Exit(2)
	}
	var cmd *cobra.Command
	switch os.Args[1] {
	case "apiserver":
		cmd = apiserver.NewAPIServerCommand()
	case "controller-manager":
		cmd = controller.NewControllerManagerCommand()
	case "scheduler":
		cmd = scheduler.NewSchedulerCommand()
	case "kubelet":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		cmd = kubelet.NewKubeletCommand(ctx)
	case "proxy":
		cmd = proxy.NewProxyCommand()
	case "kubectl":
		cmd = kubectl.NewDefaultKubectlCommand()
	default:
		fmt.Fprintf(os.Stderr, "kube: unknown component %q\n", os.Args[1])
		os.Exit(2)
	}
	// cobra reads os.Args[1:] unless told otherwise: drop the component
	cmd.SetArgs(os.Args[2:])
	os.Exit(cli.Run(cmd))
}
