// Package kube runs the wrapper where users run it: in a real single-node
// Kubernetes (kube-apiserver, kubelet, controller manager and scheduler of
// make kube-bin; etcd, containerd, runc and the CNI plugins of Debian),
// deployed through the chart. The cluster is the run's own and is torn down
// at the end, the host left as it was found; a cluster that cannot start
// fails the suite, it is never skipped.
//
// PW_KUBE_BIN and PW_KUBE_DNS name the kube and DNS binaries (make test
// sets them); PW_KUBE_ETCD and
// PW_KUBE_CNI the etcd binary and the CNI plugins (etcd on PATH and
// /usr/lib/cni by default).
package kube

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/process-wrapper/process-wrapper/integration/cluster"
	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// The images of the suite: the wrapper's, as make docker-build-slim builds
// it, and an unrelated app image, a static busybox FROM scratch.
const (
	wrapperImage = "process-wrapper/process-wrapper:kube"
	appImage     = "process-wrapper-test/busybox:kube"
	etcdImage    = "process-wrapper-test/etcd:kube"
)

var (
	kc     *cluster.Cluster
	client *kubernetes.Clientset
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "kube suite:", err)
		return 1
	}
	kube, dns := os.Getenv("PW_KUBE_BIN"), os.Getenv("PW_KUBE_DNS")
	if kube == "" || dns == "" {
		return fail(fmt.Errorf("PW_KUBE_BIN or PW_KUBE_DNS is unset: make test builds the kube and DNS binaries and sets them (make kube-bin prints their paths)"))
	}
	etcd := os.Getenv("PW_KUBE_ETCD")
	if etcd == "" {
		etcd = "etcd"
	}
	cni := os.Getenv("PW_KUBE_CNI")
	if cni == "" {
		cni = "/usr/lib/cni"
	}
	work, err := os.MkdirTemp("", "pw-kube-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(work)
	if err := buildImages(work); err != nil {
		return fail(err)
	}
	before := cluster.HostSnapshot()

	// a run killed with its cluster up: the next run removes what it left
	killed, err := killedRun(work, kube, dns, etcd, cni)
	if err != nil {
		return fail(errors.Join(fmt.Errorf("the killed run: %w", err), cluster.Down()))
	}

	ctx := context.Background()
	kc, err = cluster.Start(ctx, cluster.Options{Dir: filepath.Join(work, "cluster"), Kube: kube, DNS: dns, Etcd: etcd, CNIBin: cni})
	if err != nil {
		return fail(errors.Join(err, cluster.Down()))
	}
	if cluster.Running(killed) {
		return fail(errors.Join(fmt.Errorf("the killed run's cluster still runs in %s after a new run started", killed), kc.Stop()))
	}
	code := func() int {
		if err := kc.WaitNodeReady(ctx); err != nil {
			return fail(err)
		}
		if err := kc.ImportImages(wrapperImage, appImage, "process-wrapper/metadata-mock:kube", "process-wrapper/metrics-mock:kube", "process-wrapper/shared-lock:kube", etcdImage); err != nil {
			return fail(err)
		}
		if client, err = kc.Client(); err != nil {
			return fail(err)
		}
		return m.Run()
	}()
	if code != 0 {
		dumpLogs(kc.Logs()) // the teardown removes them
	}
	if err := kc.Stop(); err != nil {
		return fail(fmt.Errorf("teardown: %w", err))
	}
	if diff := cluster.HostDiff(before, cluster.HostSnapshot()); diff != "" {
		return fail(fmt.Errorf("the host is not as the suite found it:\n%s", diff))
	}
	return code
}

// buildImages builds the wrapper's image with the Makefile users run, the
// app image and the sandbox image.
func buildImages(work string) error {
	out, err := exec.Command("make", "-s", "-C", "../..", "docker-build-slim", "IMAGE_TAG=kube").CombinedOutput()
	if err != nil {
		return fmt.Errorf("make docker-build-slim: %w\n%s", err, out)
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox is needed (Debian's busybox-static; .ci/services installs it): %w", err)
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	if err := cluster.BuildImage(appImage, filepath.Join(work, "app-image"), map[string][]byte{"busybox": b},
		"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"); err != nil {
		return err
	}
	// Debian's etcd, for the shared-lock servers of an external etcd: its
	// binary links glibc, which goes in beside it
	files := map[string][]byte{}
	for name, path := range map[string]string{"etcd": "/usr/bin/etcd", "libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6", "ld-linux-x86-64.so.2": "/lib64/ld-linux-x86-64.so.2"} {
		if files[name], err = os.ReadFile(path); err != nil {
			return fmt.Errorf("the etcd image: %w", err)
		}
	}
	if err := cluster.BuildImage(etcdImage, filepath.Join(work, "etcd-image"), files,
		"FROM scratch\nCOPY libc.so.6 /lib/x86_64-linux-gnu/libc.so.6\nCOPY ld-linux-x86-64.so.2 /lib64/ld-linux-x86-64.so.2\nCOPY etcd /etcd\nENTRYPOINT [\"/etcd\"]\n"); err != nil {
		return err
	}
	return cluster.BuildPause("..", work)
}

// killedRun brings a cluster up in a process of its own (cluster/up
// -hold, as a test run holds one), runs a pod in it, and SIGKILLs that
// process: its components, the pod's containers, mounts, cgroups and
// sysctls are left for cluster.Start to remove.
func killedRun(work, kube, dns, etcd, cni string) (dir string, err error) {
	bin := filepath.Join(work, "up")
	if out, err := exec.Command("go", "build", "-o", bin, "../cluster/up").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build cluster/up: %w: %s", err, out)
	}
	dir = filepath.Join(work, "killed")
	up := exec.Command(bin, "-hold", "-dir", dir, "-kube", kube, "-dns", dns, "-etcd", etcd, "-cni", cni)
	up.Dir = ".."
	up.Stderr = os.Stderr
	stdout, err := up.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := up.Start(); err != nil {
		return "", err
	}
	defer func() { up.Process.Kill(); up.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("cluster/up -hold: %w", err)
	}
	kubeconfig, ok := strings.CutPrefix(strings.TrimSpace(line), "export KUBECONFIG=")
	if !ok {
		return "", fmt.Errorf("cluster/up -hold printed %q", line)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return "", err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "left-behind", Finalizers: []string{"process-wrapper.test/keep"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "pause", Image: cluster.PauseImage, ImagePullPolicy: corev1.PullNever,
		}}},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	if !waitfor.Poll(60*time.Second, func() bool {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "left-behind", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning
	}) {
		return "", fmt.Errorf("the pod of the killed run did not run within 60 s")
	}
	if err := up.Process.Signal(syscall.SIGKILL); err != nil {
		return "", err
	}
	up.Wait()
	if !cluster.Running(dir) {
		return "", fmt.Errorf("the killed run's cluster did not outlive it: nothing is left to remove")
	}
	return dir, nil
}

func dumpLogs(dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(os.Stderr, "==> %s (last %d lines)\n%s\n", filepath.Base(l), len(lines), strings.Join(lines, "\n"))
	}
}
