package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/process-wrapper/process-wrapper/internal/waitfor"
)

// Post-start hooks run once every process is ready, hold /readiness and the
// readiness file back until they succeed, are retried when they fail, and
// do not run again when a process restarts.
func TestPostStartHooks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tries, once, crashed := filepath.Join(dir, "tries"), filepath.Join(dir, "once"), filepath.Join(dir, "crashed")
	w := start(t, config(t, fmt.Sprintf(`
- name: app
  entrypoint: sh
  # crashes once, a while after the hooks ran, then stays up
  args: [-c, 'if [ -f %[3]s ]; then exec CHILD sleep; fi; while [ ! -f %[2]s ]; do sleep 0.05; done; touch %[3]s; exit 1']
  postStart:
    - command: [sh, -c, 'n=$(cat %[1]s 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s; echo "warm-up try $n"; [ $n -ge 3 ]']
    - command: [sh, -c, 'echo x >> %[2]s; echo "$GREETING"']
      env: {GREETING: "hello $(WHO)"}
      timeoutSeconds: 5
  envs: {WHO: hooks}`, tries, once, crashed)), opts{})
	base := w.url()
	w.waitLine(10*time.Second, "msg", "post-start hook failed", "hook", "app.postStart[0]", "try", "1")
	code, body := httpGet(t, base+"/readiness")
	if code != 503 || !strings.Contains(body, "wrapper: post-start hook app.postStart[0] failed (try 1") || !strings.Contains(body, `warm-up try 1`) {
		t.Errorf("readiness while the hook fails: %d %q", code, body)
	}
	if _, err := os.Stat(readinessFile(w)); err == nil {
		t.Error("readiness file written before the hooks succeeded")
	}
	w.waitLine(15*time.Second, "msg", "post-start hook succeeded", "hook", "app.postStart[0]", "tries", "3")
	w.waitLine(5*time.Second, "msg", "post-start hook succeeded", "hook", "app.postStart[1]")
	// each try is in the hook histogram: two failed, one passed
	fams, _ := scrape(t, w.url()+"/metrics")
	failed, _ := value(fams, "process_wrapper_hook_duration_seconds", map[string]string{"hook": "app.postStart[0]", "result": "failed"})
	ok, _ := value(fams, "process_wrapper_hook_duration_seconds", map[string]string{"hook": "app.postStart[0]", "result": "ok"})
	if failed != 2 || ok != 1 {
		t.Errorf("app.postStart[0] tries in the histogram: %v failed, %v ok; want 2 and 1", failed, ok)
	}
	waitfor.Condition(t, 5*time.Second, "readiness 200 and the file", func() bool {
		c, _ := httpGet(t, base+"/readiness")
		_, err := os.Stat(readinessFile(w))
		return c == 200 && err == nil
	})
	// the process restarts (it crashes once after the hooks): no hook runs again
	waitfor.Condition(t, 10*time.Second, "the crash and the restart", func() bool {
		return len(w.find("msg", "process started", "process", "app")) >= 2
	})
	waitfor.Condition(t, 10*time.Second, "ready again", func() bool { c, _ := httpGet(t, base+"/readiness"); return c == 200 })
	b, _ := os.ReadFile(once)
	if string(b) != "x\n" {
		t.Errorf("the second hook ran %d times", strings.Count(string(b), "x"))
	}
	w.signal(syscall.SIGTERM)
	w.wait(10 * time.Second)
}

func TestSQLHook(t *testing.T) {
	t.Parallel()
	dsn := os.Getenv("PW_TEST_PG_DSN")
	if dsn == "" {
		t.Fatal("PW_TEST_PG_DSN unset: the run's own PostgreSQL (make test starts it with .ci/services start)")
	}
	conn, err := pgconn.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatalf("the run's PostgreSQL (PW_TEST_PG_DSN): %v", err)
	}
	defer conn.Close(context.Background())
	table := fmt.Sprintf("pw_hook_%d", time.Now().UnixNano())
	w := start(t, config(t, fmt.Sprintf(`
- name: app
  entrypoint: CHILD
  args: [sleep]
  postStart:
    - sql:
        dsn: %q
        statements: ["CREATE TABLE %[2]s (v text)", "INSERT INTO %[2]s VALUES ('warmed')"]`, dsn, table)), opts{})
	w.waitLine(10*time.Second, "msg", "post-start hook succeeded", "hook", "app.postStart[0]")
	res, err := conn.Exec(context.Background(), "SELECT v FROM "+table).ReadAll()
	if err != nil || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != "warmed" {
		t.Errorf("the hook's statements did not run: %v %v", err, res)
	}
	conn.Exec(context.Background(), "DROP TABLE "+table).ReadAll()
	w.signal(syscall.SIGTERM)
	w.wait(10 * time.Second)
}
