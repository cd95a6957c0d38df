package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// The images of `make docker-build-slim`, and an unrelated base image: a
// static busybox (Debian's busybox-static) FROM scratch, which knows
// nothing of process-wrapper.
const (
	wrapperImage  = "process-wrapper/process-wrapper:fullstack"
	lockImage     = "process-wrapper/shared-lock:fullstack"
	metadataImage = "process-wrapper/metadata-mock:fullstack"
	eventsImage   = "process-wrapper/metrics-mock:fullstack"
	appImage      = "process-wrapper-it/busybox-app:fullstack"
)

const appDockerfile = `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY app.yaml index.html /etc/app/
`

// the processes of the app containers: a locked one-shot step, a web
// server with a readiness probe, orphans for PID 1 to reap, and one that
// ignores SIGTERM (killed at the deadline)
const appConfig = `- name: locked
  entrypoint: sh
  args: ["-c", "echo enter; sleep 1; echo leave"]
  restartPolicy: Never
  sharedLock: {name: fullstack, ttlSeconds: 10, holdUntil: exit}
- name: web
  entrypoint: httpd
  args: ["-f", "-p", "8080", "-h", "/etc/app"]
  readiness: {http: {port: 8080, path: /index.html}, periodSeconds: 1}
- name: orphans
  entrypoint: sh
  args: ["-c", "for i in 1 2 3 4 5 6 7 8 9 10; do (sleep 0.3 &); done; exec sleep 100000"]
- name: stubborn
  entrypoint: sh
  args: ["-c", "trap '' TERM; while true; do sleep 1; done"]
`

var buildOnce sync.Once
var buildErr error

// buildFullStack builds the slim images with the Makefile users run, and
// the unrelated app image.
func buildFullStack(t *testing.T) {
	t.Helper()
	buildOnce.Do(func() {
		cmd := exec.Command("make", "-s", "-C", "..", "docker-build-slim", "IMAGE_TAG=fullstack")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("make docker-build-slim: %v\n%s", err, out)
			return
		}
		busybox, err := exec.LookPath("busybox")
		if err != nil {
			buildErr = fmt.Errorf("busybox is needed (Debian's busybox-static; .ci/services installs it): %v", err)
			return
		}
		dir, err := os.MkdirTemp("", "pw-app-")
		if err != nil {
			buildErr = err
			return
		}
		defer os.RemoveAll(dir)
		b, err := os.ReadFile(busybox)
		if err != nil {
			buildErr = err
			return
		}
		for name, content := range map[string][]byte{"busybox": b, "app.yaml": []byte(appConfig), "index.html": []byte("ok\n"), "Dockerfile": []byte(appDockerfile)} {
			if err := os.WriteFile(filepath.Join(dir, name), content, 0o755); err != nil {
				buildErr = err
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		provider, err := testcontainers.NewDockerProvider()
		if err != nil {
			buildErr = err
			return
		}
		defer provider.Close()
		repo, tag, _ := strings.Cut(appImage, ":")
		_, buildErr = provider.BuildImage(ctx, &testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
			Context: dir, Repo: repo, Tag: tag, KeepImage: true}})
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

func start(t *testing.T, req testcontainers.ContainerRequest) testcontainers.Container {
	t.Helper()
	c, err := testcontainers.GenericContainer(context.Background(), testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	if c != nil {
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s logs:\n%s", req.Image, logs(t, c))
			}
			_ = testcontainers.TerminateContainer(c)
		})
	}
	if err != nil {
		t.Fatalf("%s: %v", req.Image, err)
	}
	return c
}

// endpoint is the container's address on its Docker network, which the
// host reaches directly (the port mapping's host address is not always
// reachable from here).
func endpoint(t *testing.T, c testcontainers.Container, port string) string {
	t.Helper()
	ip, err := c.ContainerIP(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + net.JoinHostPort(ip, strings.TrimSuffix(port, "/tcp"))
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The whole stack on one Docker network: the wrapper injected into an
// unrelated busybox image through a volume filled by an init-style
// container, with metrics-mock, metadata-mock and the shared-lock server.
func TestFullStack(t *testing.T) {
	buildFullStack(t)
	ctx := context.Background()
	nw, err := network.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nw.Remove(context.Background()) })
	on := func(alias string) map[string][]string { return map[string][]string{nw.Name: {alias}} }

	events := start(t, testcontainers.ContainerRequest{Image: eventsImage, Cmd: []string{"-udp", ":9999", "-http", ":9998"},
		ExposedPorts: []string{"9998/tcp"}, Networks: []string{nw.Name}, NetworkAliases: on("metrics"),
		WaitingFor: wait.ForLog(`msg="serving"`)}) // scratch images: no shell for port checks
	metadata := start(t, testcontainers.ContainerRequest{Image: metadataImage, Cmd: []string{"-listen", ":8989"},
		ExposedPorts: []string{"8989/tcp"}, Networks: []string{nw.Name}, NetworkAliases: on("metadata"),
		WaitingFor: wait.ForLog(`msg="serving"`)})
	start(t, testcontainers.ContainerRequest{Image: lockImage, ExposedPorts: []string{"8191/tcp"},
		Networks: []string{nw.Name}, NetworkAliases: on("lock"),
		WaitingFor: wait.ForLog(`msg="serving"`).WithStartupTimeout(60 * time.Second)})

	// the injection as the README gives it: the wrapper's image, as its own
	// non-root user, copies its binary into a new named volume mounted on
	// the image's /install (Docker gives the volume that directory's mode,
	// 1777); the app mounts the volume on /process-wrapper
	volume := fmt.Sprintf("pw-inject-%d", time.Now().UnixNano())
	t.Cleanup(func() { exec.Command("docker", "volume", "rm", "-f", volume).Run() })
	inject := start(t, testcontainers.ContainerRequest{Image: wrapperImage, Cmd: []string{"-install", "/install"},
		Mounts:     testcontainers.ContainerMounts{testcontainers.VolumeMount(volume, "/install")},
		WaitingFor: wait.ForExit().WithExitTimeout(30 * time.Second)})
	if code := exitCodeOf(t, inject); code != 0 {
		logs, _ := inject.Logs(context.Background())
		out, _ := io.ReadAll(logs)
		t.Fatalf("the install container exited %d:\n%s", code, out)
	}
	mount := testcontainers.ContainerMounts{testcontainers.VolumeMount(volume, "/process-wrapper")}

	apps := make([]testcontainers.Container, 2)
	var wg sync.WaitGroup
	for i := range apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			apps[i] = start(t, testcontainers.ContainerRequest{Image: appImage, Mounts: mount, Networks: []string{nw.Name},
				Entrypoint:   []string{"/process-wrapper/process-wrapper"},
				Cmd:          []string{"-config", "/etc/app/app.yaml", "-shared-lock-url", "http://lock:8191", "-graceful-shutdown-deadline", "3s"},
				ExposedPorts: []string{"8111/tcp"},
				Env: map[string]string{"HANDLE_PREEMPTION": "true", "METADATA_URL": "http://metadata:8989/computeMetadata/v1/instance/preempted",
					"METRICS_SERVER_ADDRESS": "metrics:9999", "POD_NAMESPACE": "fullstack"},
				WaitingFor: wait.ForLog(`msg="starting"`).WithStartupTimeout(30 * time.Second)})
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, a := range apps {
		base := endpoint(t, a, "8111/tcp")
		var body string
		if !waitfor.Poll(30*time.Second, func() bool { var c int; c, body = get(base + "/readiness"); return c == 200 }) {
			t.Fatalf("app %d not ready after 30s: %s", i, body)
		}
	}

	// the locked step ran in both, never at once
	type span struct{ enter, leave time.Time }
	var spans []span
	for i, a := range apps {
		var s span
		// docker's log driver may lag a little behind the container
		waitfor.Poll(5*time.Second, func() bool {
			s = span{}
			for _, l := range lines(t, a) {
				if l["app"] != "locked" || (l["msg"] != "enter" && l["msg"] != "leave") {
					continue
				}
				ts, err := time.Parse(time.RFC3339Nano, l["ts"])
				if err != nil {
					t.Fatal(err)
				}
				if l["msg"] == "enter" {
					s.enter = ts
				} else {
					s.leave = ts
				}
			}
			return !s.enter.IsZero() && !s.leave.IsZero()
		})
		if s.enter.IsZero() || s.leave.IsZero() {
			t.Fatalf("app %d: the locked step did not run: %+v", i, s)
		}
		spans = append(spans, s)
	}
	if a, b := spans[0], spans[1]; a.enter.Before(b.leave) && b.enter.Before(a.leave) {
		t.Errorf("the locked step ran in both containers at once: %v-%v and %v-%v", a.enter, a.leave, b.enter, b.leave)
	}

	// PID 1 is the wrapper, and the orphans are reaped: no zombie
	var ps string
	waitfor.Condition(t, 10*time.Second, "the orphans gone from app 0", func() bool {
		ps = execIn(t, apps[0], "ps", "-o", "pid,stat,args")
		return !strings.Contains(ps, "sleep 0.3")
	})
	for _, l := range strings.Split(ps, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && (strings.HasPrefix(f[1], "Z") || f[0] == "1" && !strings.HasSuffix(f[2], "/process-wrapper")) {
			t.Errorf("app 0: %q (want the wrapper as PID 1 and no zombie):\n%s", l, ps)
		}
	}

	// a preemption played on the mock: not ready, still live, an event
	resp, err := http.Post(endpoint(t, metadata, "8989/tcp")+"/control/preempt", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for i, a := range apps {
		base := endpoint(t, a, "8111/tcp")
		waitfor.Condition(t, 10*time.Second, fmt.Sprintf("app %d readiness 503 preempted", i), func() bool {
			c, body := get(base + "/readiness")
			return c == 503 && strings.Contains(body, "preempted")
		})
		if c, _ := get(base + "/liveness"); c != 200 {
			t.Errorf("app %d: liveness %d after the preemption", i, c)
		}
	}
	waitfor.Condition(t, 10*time.Second, "two preemption events", func() bool {
		_, body := get(endpoint(t, events, "9998/tcp") + "/events?event=preemption")
		var evs []map[string]any
		json.Unmarshal([]byte(body), &evs)
		return len(evs) == 2 && evs[0]["namespace"] == "fullstack"
	})

	// docker stop with more time than the wrapper's deadline: the stubborn
	// process is killed at 3 s, the exit code is the first failure's (web,
	// killed by its SIGTERM: 143)
	timeout := 20 * time.Second
	began := time.Now()
	if err := apps[0].Stop(ctx, &timeout); err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	if took < 3*time.Second || took > 8*time.Second {
		t.Errorf("docker stop took %v: want the wrapper's 3 s deadline, not docker's 20 s", took)
	}
	if code := exitCodeOf(t, apps[0]); code != 143 {
		t.Errorf("exit code %d, want 143 (web, stopped by SIGTERM, is the first to fail)", code)
	}
	if ls := lines(t, apps[0]); !has(ls, "msg", "graceful shutdown deadline reached: killing process group", "process", "stubborn") {
		t.Error("the stubborn process was not killed at the deadline")
	}
}

func exitCodeOf(t *testing.T, c testcontainers.Container) int {
	t.Helper()
	st, err := c.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.ExitCode
}

func execIn(t *testing.T, c testcontainers.Container, cmd ...string) string {
	t.Helper()
	code, r, err := c.Exec(context.Background(), cmd, tcexec.Multiplexed())
	if err != nil {
		t.Fatalf("exec %v: %v", cmd, err)
	}
	var b bytes.Buffer
	io.Copy(&b, r)
	if code != 0 {
		t.Fatalf("exec %v: exit %d: %s", cmd, code, b.String())
	}
	return b.String()
}
