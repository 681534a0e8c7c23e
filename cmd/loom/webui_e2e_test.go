package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/internal/browsertest"
	"github.com/loomtrain/loom/internal/devcluster"
)

// TestWebUIEndToEnd trains a job on a real cluster (embedded etcd and S3, a
// coordinator and three worker processes), kills one of its workers with
// SIGKILL, and checks in chromium what the coordinator's web UI shows: the
// job, its loss curve with every step, the restart with its cause, the
// workers' log tails; and that `loom status JOB` plots the loss. With
// LOOM_SCREENSHOTS=DIR it saves the job page as DIR/webui-job.png and the
// cluster page as DIR/webui-cluster.png (docs/ holds them).
func TestWebUIEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level web UI test")
	}
	browsertest.Chromium(t) // skip before starting a cluster
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), Bin: loomBinary, Coordinators: 1, LeaseTTL: 2 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uri, err := c.WriteData(ctx, "blip2", 256)
	if err != nil {
		t.Fatal(err)
	}
	procs := map[string]*devcluster.Proc{}
	for _, id := range []string{"w0", "w1", "w2"} {
		p, err := c.StartWorker(id)
		if err != nil {
			t.Fatal(err)
		}
		procs[id] = p
	}
	m, err := devManifest(devFlags{recipe: "blip2", size: "tiny", workers: 2, steps: 16, batch: 8, lr: 2e-3}, uri)
	if err != nil {
		t.Fatal(err)
	}
	m.Name = "ui-demo"
	m.Checkpoint.Interval = 4
	if _, err := c.Submit(ctx, m); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, c, m.Name, 60*time.Second, func(j *loompb.Job) bool { return j.State == "running" && lastCheckpoint(j) >= 4 })
	victim := j.Workers[1]
	t.Logf("SIGKILL worker %s (rank 1) at committed step %d", victim, lastCheckpoint(j))
	procs[victim].Cmd.Process.Kill()
	<-procs[victim].Done
	j = waitJob(t, c, m.Name, 120*time.Second, func(j *loompb.Job) bool { return j.State == "succeeded" })
	if j.Restarts < 1 {
		t.Fatalf("job %s finished with %d restarts; the kill should have caused one", j.Name, j.Restarts)
	}

	base := "http://" + c.Coordinators()[0].HTTP
	tab := browsertest.Tab(t, 90*time.Second)
	t.Cleanup(browsertest.Close)
	browsertest.Navigate(t, tab, base+"/#/jobs")
	row, err := browsertest.Text(tab, `tr[data-job="ui-demo"]`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(row, "succeeded") || !strings.Contains(row, "32/32") {
		t.Errorf("jobs row %q, want the job succeeded at 32/32", row)
	}
	browsertest.Navigate(t, tab, base+"/#/job/ui-demo")
	for stage, want := range []int{16, 16} {
		n, err := browsertest.Attr(tab, `[data-chart="loss-`+strconv.Itoa(stage)+`"] path[data-series="loss"]`, "data-points")
		if err != nil {
			t.Fatal(err)
		}
		if n != strconv.Itoa(want) {
			t.Errorf("stage %d's loss curve has %s points, want %d (every step)", stage+1, n, want)
		}
	}
	var restart string
	for g := int64(2); g <= j.Generation && restart == ""; g++ {
		if row, err := browsertest.Text(tab, `#generations tr[data-generation="`+strconv.FormatInt(g, 10)+`"]`); err == nil && strings.Contains(row, "restart") {
			restart = row
		}
	}
	if !strings.Contains(restart, victim) {
		t.Errorf("no generation row shows a restart naming %s (found %q)", victim, restart)
	}
	lost, err := browsertest.Text(tab, `#events tr[data-kind="worker-lost"]`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(lost, "worker "+victim+" lost") {
		t.Errorf("worker-lost event %q does not name %s", lost, victim)
	}
	split, err := browsertest.Text(tab, "#time-split")
	if err != nil || !strings.Contains(split, "communication") {
		t.Errorf("step-time split %q, %v", split, err)
	}
	if got, err := browsertest.Text(tab, "#checkpoints"); err != nil || !strings.Contains(got, "32") {
		t.Errorf("checkpoints table %q, %v; want the final step 32", got, err)
	}
	shot(t, tab, "webui-job.png")
	browsertest.Navigate(t, tab, base+"/#/cluster")
	if w, err := browsertest.Text(tab, `#workers tr[data-worker="`+victim+`"]`); err != nil || !strings.Contains(w, "down") {
		t.Errorf("the killed worker's row %q, %v; want it down", w, err)
	}
	if l, err := browsertest.Text(tab, "#leader"); err != nil || l != "c0" {
		t.Errorf("leader %q, %v; want c0", l, err)
	}
	shot(t, tab, "webui-cluster.png")

	// A running job's page shows its workers' log tails: run a short second job.
	m2 := *m
	m2.Name = "ui-logs"
	m2.Stages = m2.Stages[:1]
	m2.Stages[0].Steps = 400
	if _, err := c.Submit(ctx, &m2); err != nil {
		t.Fatal(err)
	}
	j2 := waitJob(t, c, m2.Name, 60*time.Second, func(j *loompb.Job) bool { return j.State == "running" && j.Step > 0 })
	browsertest.Navigate(t, tab, base+"/#/job/ui-logs")
	lg, err := browsertest.Text(tab, `pre[data-log="`+j2.Workers[0]+`"]`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(lg, `"job":"ui-logs"`) {
		t.Errorf("%s's log tail does not show the running job: %.300q", j2.Workers[0], lg)
	}

	out, err := exec.Command(loomBinary, "status", "--coordinator", c.APIs()[0], "ui-demo").CombinedOutput()
	if err != nil {
		t.Fatalf("loom status ui-demo: %v\n%s", err, out)
	}
	for _, want := range []string{"loss, stage 1/2 representation: steps 1–16", "loss, stage 2/2 generative: steps 17–32", "┤⠀"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("loom status ui-demo lacks %q:\n%s", want, out)
		}
	}
	if dir := os.Getenv("LOOM_SCREENSHOTS"); dir != "" {
		t.Logf("loom status ui-demo:\n%s", out)
	}
}

// shot saves a full-page screenshot when LOOM_SCREENSHOTS names a directory.
func shot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	dir := os.Getenv("LOOM_SCREENSHOTS")
	if dir == "" {
		return
	}
	if err := chromedp.Do(tab, chromedp.Sleep(2500*time.Millisecond)); err != nil { // one more poll: every chart drawn
		t.Fatal(err)
	}
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}
