package cluster

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// BuildPause builds the sandbox image (./pause, FROM scratch) into Docker,
// from the integration module's directory.
func BuildPause(moduleDir, work string) error {
	ctx := filepath.Join(work, "pause-image")
	if err := os.MkdirAll(ctx, 0o755); err != nil {
		return fmt.Errorf("pause image: %w", err)
	}
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(ctx, "pause"), "./cluster/pause")
	build.Dir = moduleDir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("pause image: go build: %w: %s", err, out)
	}
	return BuildImage(PauseImage, ctx, nil, "FROM scratch\nCOPY pause /pause\nENTRYPOINT [\"/pause\"]\n")
}

// BuildImage builds tag into Docker from the directory ctx, where files
// (name to content, mode 0755) and the Dockerfile are written first.
func BuildImage(tag, ctx string, files map[string][]byte, dockerfile string) error {
	if err := os.MkdirAll(ctx, 0o755); err != nil {
		return fmt.Errorf("image %s: %w", tag, err)
	}
	files = maps.Clone(files)
	if files == nil {
		files = map[string][]byte{}
	}
	files["Dockerfile"] = []byte(dockerfile)
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(ctx, name), b, 0o755); err != nil {
			return fmt.Errorf("image %s: %w", tag, err)
		}
	}
	cmd := exec.Command("docker", "build", "-q", "-t", tag, ctx)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("image %s: docker build: %w: %s", tag, err, out)
	}
	return nil
}

// ImportImages copies images from Docker into the cluster's containerd,
// where pods with imagePullPolicy: Never find them.
func (c *Cluster) ImportImages(images ...string) error {
	for _, img := range images {
		save := exec.Command("docker", "save", img)
		imp := exec.Command("ctr", "--address", filepath.Join(c.l.sock, "containerd.sock"), "-n", "k8s.io", "images", "import", "-")
		pipe, err := save.StdoutPipe()
		if err != nil {
			return fmt.Errorf("import %s: %w", img, err)
		}
		imp.Stdin = pipe
		var saveErr, impOut strings.Builder
		save.Stderr = &saveErr
		imp.Stdout, imp.Stderr = &impOut, &impOut
		if err := save.Start(); err != nil {
			return fmt.Errorf("import %s: docker save: %w", img, err)
		}
		ierr := imp.Run()
		serr := save.Wait()
		if serr != nil {
			return fmt.Errorf("import %s: docker save: %w: %s", img, serr, saveErr.String())
		}
		if ierr != nil {
			return fmt.Errorf("import %s: ctr import: %w: %s", img, ierr, impOut.String())
		}
	}
	return nil
}

// waitSocket waits for a unix socket to appear.
func waitSocket(path string, timeout time.Duration) error {
	if !waitfor.Poll(timeout, func() bool {
		fi, err := os.Stat(path)
		return err == nil && fi.Mode()&os.ModeSocket != 0
	}) {
		return fmt.Errorf("%s did not appear within %s", path, timeout)
	}
	return nil
}
