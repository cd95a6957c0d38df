package cluster

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// Config is the admin's client configuration.
func (c *Cluster) Config() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", c.Kubeconfig, err)
	}
	return cfg, nil
}

// Client is a client-go clientset of the admin.
func (c *Cluster) Client() (*kubernetes.Clientset, error) {
	cfg, err := c.Config()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// WaitNodeReady waits until the node is Ready and the default namespace
// has its service account (the controller manager made it): pods can be
// created then.
func (c *Cluster) WaitNodeReady(ctx context.Context) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	var last error
	if !waitfor.Poll(2*time.Minute, func() bool {
		last = nodeReady(ctx, cs)
		return last == nil || ctx.Err() != nil
	}) || last != nil {
		return fmt.Errorf("cluster: the node is not ready (kubelet log: %s): %w", c.l.path("logs", "kubelet.log"), last)
	}
	return nil
}

func nodeReady(ctx context.Context, cs *kubernetes.Clientset) error {
	n, err := cs.CoreV1().Nodes().Get(ctx, "localhost", metav1.GetOptions{})
	if err != nil {
		return err
	}
	ready := false
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			ready = cond.Status == corev1.ConditionTrue
			if !ready {
				return fmt.Errorf("node localhost: Ready=%s: %s", cond.Status, cond.Message)
			}
		}
	}
	if !ready {
		return fmt.Errorf("node localhost: no Ready condition yet")
	}
	if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		return err
	}
	return nil
}

// APIHost and APIPort are where pods reach the API server (the pod
// bridge's host address), for KUBERNETES_SERVICE_HOST and _PORT.
func (c *Cluster) APIHost() string { return c.l.gateway.String() }
func (c *Cluster) APIPort() int    { return c.l.apiPort }

// Logs is the directory of the components' logs.
func (c *Cluster) Logs() string { return c.l.path("logs") }
