// Package integration boots the built binaries together in containers built
// locally (no image is pulled): the wrapper runs as PID 1 of a FROM scratch
// image, as it does in a pod.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logfmt/logfmt"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

const image = "process-wrapper-it:test"

const dockerfile = `FROM scratch
COPY process-wrapper testchild /
COPY testdata/ /etc/pw/
ENTRYPOINT ["/process-wrapper"]
`

func TestMain(m *testing.M) {
	// Ryuk's image cannot be pulled here; every test terminates its own containers.
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	if err := buildImage(); err != nil {
		fmt.Fprintln(os.Stderr, "integration: building the test image:", err)
		fmt.Fprintln(os.Stderr, "integration: these tests need Docker Engine running (see .ci/run)")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func buildImage() error {
	dir, err := os.MkdirTemp("", "pw-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for bin, pkg := range map[string]string{"process-wrapper": "../cmd/process-wrapper", "testchild": "../internal/testchild"} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, bin), pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	if err := os.CopyFS(filepath.Join(dir, "testdata"), os.DirFS("testdata")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	provider, err := testcontainers.NewDockerProvider()
	if err != nil {
		return err
	}
	defer provider.Close()
	repo, tag, _ := strings.Cut(image, ":")
	_, err = provider.BuildImage(ctx, &testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
		Context: dir, Repo: repo, Tag: tag, KeepImage: true,
	}})
	return err
}

// run starts the wrapper image with args and waits until the wrapper logged
// that every named process started.
func run(t *testing.T, args []string, started ...string) testcontainers.Container {
	t.Helper()
	ctx := context.Background()
	strategies := []wait.Strategy{wait.ForLog(`msg="starting"`)}
	for _, name := range started {
		strategies = append(strategies, wait.ForLog(fmt.Sprintf(`app=%s stream=stdout`, name)))
	}
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image:      image,
			Cmd:        args,
			WaitingFor: wait.ForAll(strategies...).WithDeadline(30 * time.Second),
		},
		Started: true,
	})
	if c != nil {
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("container logs:\n%s", logs(t, c))
			}
			_ = testcontainers.TerminateContainer(c)
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func logs(t *testing.T, c testcontainers.Container) string {
	r, err := c.Logs(context.Background())
	if err != nil {
		return "(no logs: " + err.Error() + ")"
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return string(b)
}

// lines decodes the container's logfmt output.
func lines(t *testing.T, c testcontainers.Container) []map[string]string {
	var out []map[string]string
	d := logfmt.NewDecoder(bytes.NewReader([]byte(logs(t, c))))
	for d.ScanRecord() {
		l := map[string]string{}
		for d.ScanKeyval() {
			l[string(d.Key())] = string(d.Value())
		}
		out = append(out, l)
	}
	return out
}

func has(ls []map[string]string, kv ...string) bool {
	for _, l := range ls {
		ok := true
		for i := 0; i+1 < len(kv); i += 2 {
			if l[kv[i]] != kv[i+1] {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func exitCode(t *testing.T, c testcontainers.Container) int {
	t.Helper()
	st, err := c.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Running {
		t.Fatal("container still running")
	}
	return st.ExitCode
}

// docker stop -t 20 (longer than the wrapper's deadline): the wrapper, PID 1,
// drains every process with its stop signal and exits 0.
func TestDockerStopDrains(t *testing.T) {
	t.Parallel()
	c := run(t, []string{"-config", "/etc/pw/drain.yaml", "-graceful-shutdown-deadline", "5s"}, "worker", "quitter")
	timeout := 20 * time.Second
	began := time.Now()
	if err := c.Stop(context.Background(), &timeout); err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	if code := exitCode(t, c); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if took > 5*time.Second {
		t.Errorf("stop took %v: the processes drained at once", took)
	}
	ls := lines(t, c)
	for _, want := range [][]string{
		{"msg", "starting", "pid", "1"},
		{"msg", "shutting down", "signal", "SIGTERM"},
		{"app", "worker", "msg", "got SIGTERM"},
		{"app", "worker", "msg", "draining"},
		{"app", "quitter", "msg", "got SIGQUIT"},
		{"msg", "exiting", "code", "0"},
	} {
		if !has(ls, want...) {
			t.Errorf("no line with %q", want)
		}
	}
}

// A process that ignores SIGTERM is killed at the wrapper's deadline, long
// before docker's own timeout, and the container's exit code says so (137).
func TestDockerStopKillsAtTheDeadline(t *testing.T) {
	t.Parallel()
	c := run(t, []string{"-config", "/etc/pw/stubborn.yaml", "-graceful-shutdown-deadline", "1s"}, "stubborn", "polite")
	timeout := 30 * time.Second
	began := time.Now()
	if err := c.Stop(context.Background(), &timeout); err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	if code := exitCode(t, c); code != 137 {
		t.Errorf("exit code %d, want 137", code)
	}
	if took < time.Second || took > 15*time.Second {
		t.Errorf("stop took %v: want the wrapper's 1s deadline, not docker's 30s", took)
	}
	ls := lines(t, c)
	if !has(ls, "msg", "graceful shutdown deadline reached: killing process group", "process", "stubborn") {
		t.Error("no deadline kill logged")
	}
	if !has(ls, "app", "polite", "msg", "draining") {
		t.Error("the polite process did not drain")
	}
}

// As the container's PID 1 the wrapper reaps 1,000 orphans, leaves no zombie
// and exits with the supervised worker's code.
func TestPID1ReapsOrphansInAContainer(t *testing.T) {
	t.Parallel()
	c := run(t, []string{"-config", "/etc/pw/reap.yaml"})
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := c.State(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !st.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the wrapper did not exit")
		}
		time.Sleep(50 * time.Millisecond) // polling the container state with a deadline
	}
	if code := exitCode(t, c); code != 7 {
		t.Errorf("exit code %d, want 7", code)
	}
	ls := lines(t, c)
	for _, want := range [][]string{
		{"app", "checker", "msg", "live=0 zombies=0"},
		{"app", "orphaner", "msg", "left 1000 orphans"},
		{"msg", "exiting", "code", "7", "orphans_reaped", "1000"},
	} {
		if !has(ls, want...) {
			t.Errorf("no line with %q", want)
		}
	}
}

// process-wrapper check run in the image that runs the processes, as the
// README shows it (docker run IMAGE check -config ...): its host warnings
// speak of the image (no sh, no /etc/passwd in it), not of the machine
// the check is started from, and it exits 0 with the start order.
func TestCheckInTheImage(t *testing.T) {
	t.Parallel()
	c, err := testcontainers.GenericContainer(context.Background(), testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image:      image,
			Cmd:        []string{"check", "-config", "/etc/pw/check.yaml"},
			WaitingFor: wait.ForExit().WithExitTimeout(30 * time.Second),
		},
		Started: true,
	})
	if c != nil {
		t.Cleanup(func() { _ = testcontainers.TerminateContainer(c) })
	}
	if err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, c); code != 0 {
		t.Errorf("check exit %d, want 0 (host lacks are warnings)", code)
	}
	out := logs(t, c)
	for _, want := range []string{
		"/etc/pw/check.yaml: valid, 4 processes\n",
		"  1: inimage shell byname\n  2: app\n",
		`process=shell err="exec \"sh\": executable file not found`,
		`field \"user\": unknown user \"root\"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check in the image lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "process=inimage") || strings.Contains(out, "process=app") {
		t.Errorf("a warning for a process the image can run:\n%s", out)
	}
}
