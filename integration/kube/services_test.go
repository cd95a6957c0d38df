package kube

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Pods reach the API server and each other as in any cluster: by Service
// names, through the cluster's DNS and kube-proxy. The wrapper's readiness
// probes are what make the pods Ready: one on kubernetes.default.svc's
// /readyz (https), one on a Service in front of another release's pod.
func TestClusterServices(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	install(t, ns, values(webProcess+`- name: api
  command: ["sleep", "100000"]
  readiness:
    # the serving certificate is of the cluster's CA, which the image's bundle lacks
    http: {scheme: HTTPS, host: kubernetes.default.svc.cluster.local, port: 443, path: /readyz, insecureSkipVerify: true}
    periodSeconds: 1
`, 12))
	waitPod(t, ns, 2*time.Minute, "the pod to be Ready (the API server reached by its Service's name)", ready)

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app.kubernetes.io/instance": "demo", "app.kubernetes.io/component": "workload"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(8080)}},
		},
	}
	if _, err := client.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	installRelease(t, ns, "client", values(`- name: client
  command: ["sleep", "100000"]
  readiness: {http: {host: web, port: 80, path: /index.html}, periodSeconds: 1}
`, 12))
	waitReleasePod(t, ns, "client", 2*time.Minute, "the client pod to be Ready (the other pod reached through the web Service)", ready)
}
