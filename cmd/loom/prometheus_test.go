package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/internal/devcluster"
	"github.com/loomtrain/loom/internal/promtest"
)

// promDir is the shipped Prometheus configuration.
var promDir = filepath.Join("..", "..", "deploy", "prometheus")

// TestPrometheusRules checks the shipped configuration with promtool:
// the scrape config and the rules are valid, and the rules' unit tests
// (alerts_test.yml: every alert firing and not firing) pass.
func TestPrometheusRules(t *testing.T) {
	promtest.Binary(t, "promtool")
	// promtool resolves rule_files from the file's directory; run it there
	// as the files' comments say.
	run := func(args ...string) string { t.Helper(); return promtest.Promtool(t, promDir, args...) }
	if out := run("check", "config", "prometheus.yml"); !strings.Contains(out, "SUCCESS: 1 rule files found") {
		t.Errorf("promtool check config: the rule file is not loaded:\n%s", out)
	}
	if out := run("check", "rules", "alerts.yml"); !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool check rules:\n%s", out)
	}
	if out := run("test", "rules", "alerts_test.yml"); !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules:\n%s", out)
	}
	// Every alert the issue asks for has a rule and a unit test.
	rules, err := os.ReadFile(filepath.Join(promDir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(promDir, "alerts_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"LoomJobStalled", "LoomWorkerLost", "LoomWorkerDown", "LoomCheckpointTooOld", "LoomJobNeverCheckpointed", "LoomLeaderChanges", "LoomNoLeader", "LoomLossNaN"} {
		if !strings.Contains(string(rules), "alert: "+a+"\n") {
			t.Errorf("alerts.yml has no rule %s", a)
		}
		if !strings.Contains(string(tests), "alertname: "+a+"\n") {
			t.Errorf("alerts_test.yml does not test %s", a)
		}
	}
}

// TestPrometheusEndToEnd runs a real cluster (a coordinator and two worker
// processes), trains a tiny job, checks every process's /metrics with
// promtool, then points a real Prometheus at it, configured from the
// shipped prometheus.yml and alerts.yml (targets and `for:` durations
// shortened, the rules themselves as shipped), kills a worker with SIGKILL
// and waits for LoomWorkerLost and LoomWorkerDown to fire, as
// Prometheus's HTTP API reports them.
func TestPrometheusEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level Prometheus test")
	}
	promtest.Binary(t, "prometheus") // skip (or fail in CI) before starting a cluster
	promtest.Binary(t, "promtool")
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), Bin: loomBinary, Coordinators: 1, LeaseTTL: 2 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uri, err := c.WriteData(ctx, "blip2", 64)
	if err != nil {
		t.Fatal(err)
	}
	workers := map[string]*devcluster.Proc{}
	for _, id := range []string{"w0", "w1"} {
		p, err := c.StartWorker(id)
		if err != nil {
			t.Fatal(err)
		}
		workers[id] = p
	}
	m, err := devManifest(devFlags{recipe: "blip2", size: "tiny", workers: 2, steps: 2, batch: 4, lr: 2e-3}, uri)
	if err != nil {
		t.Fatal(err)
	}
	m.Name = "prom-demo"
	m.Checkpoint.Interval = 2
	if _, err := c.Submit(ctx, m); err != nil {
		t.Fatal(err)
	}
	waitJob(t, c, m.Name, 120*time.Second, func(j *loompb.Job) bool { return j.State == "succeeded" })

	// Every process's page, after a job: the coordinator's with the job's
	// series, the workers' with losses and checkpoint timings, etcd's.
	coord := c.Coordinators()[0]
	pages := map[string]string{"coordinator " + coord.ID: "http://" + coord.HTTP + "/metrics", "etcd": c.Etcd().Endpoints[0] + "/metrics"}
	for id, p := range workers {
		pages["worker "+id] = "http://" + p.HTTP + "/metrics"
	}
	for what, url := range pages {
		body := promtest.Scrape(t, url)
		var upstream []string
		if what == "etcd" {
			upstream = []string{"etcd_"} // etcd's own names
		}
		promtest.CheckMetrics(t, what+"'s /metrics ("+url+")", body, upstream...)
		if strings.HasPrefix(what, "worker") && !strings.Contains(body, `loom_worker_loss{term="total"}`) {
			t.Errorf("%s's /metrics has no loss after the job:\n%.2000s", what, body)
		}
	}
	if body := promtest.Scrape(t, pages["coordinator "+coord.ID]); !strings.Contains(body, `loom_job_last_checkpoint_timestamp_seconds{loom_job="prom-demo"}`) {
		t.Errorf("the coordinator's /metrics has no checkpoint time for the job:\n%.3000s", body)
	}

	// Prometheus, configured from the shipped files.
	dir := t.TempDir()
	cfg := shippedPromConfig(t, map[string][]string{"loom-coordinator": {coord.HTTP}, "loom-etcd": {strings.TrimPrefix(c.Etcd().Endpoints[0], "http://")}})
	rules, err := os.ReadFile(filepath.Join(promDir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if rules, err = promtest.ShortenFor(rules, "2s"); err != nil {
		t.Fatal(err)
	}
	// Workers are discovered as prometheus.yml says: a file per worker.
	if err := os.Mkdir(filepath.Join(dir, "workers"), 0o755); err != nil {
		t.Fatal(err)
	}
	for id, p := range workers {
		sd := fmt.Sprintf(`[{"targets": [%q], "labels": {"worker": %q}}]`, p.HTTP, id)
		if err := os.WriteFile(filepath.Join(dir, "workers", id+".json"), []byte(sd), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	prom := promtest.Start(t, dir, map[string][]byte{"prometheus.yml": cfg, "alerts.yml": rules})

	// All four targets up, and the rules evaluated on two registered
	// workers for a while: no worker-lost alert yet.
	waitUntil(t, 30*time.Second, "every target up", func() (bool, string) {
		ts, err := prom.Targets()
		if err != nil {
			return false, err.Error()
		}
		up := 0
		for _, tg := range ts {
			if tg.Health == "up" {
				up++
			}
		}
		return up == 4, fmt.Sprintf("targets %+v", ts)
	})
	time.Sleep(4 * time.Second) // two `for:` periods
	for _, a := range alerts(t, prom) {
		if a.Labels["alertname"] == "LoomWorkerLost" || a.Labels["alertname"] == "LoomWorkerDown" {
			t.Fatalf("before any worker died: %+v", a)
		}
	}

	victim := workers["w1"]
	t.Logf("SIGKILL worker w1 (pid %d, %s)", victim.Cmd.Process.Pid, victim.HTTP)
	victim.Cmd.Process.Kill()
	<-victim.Done
	start := time.Now()
	waitUntil(t, 60*time.Second, "LoomWorkerLost and LoomWorkerDown firing", func() (bool, string) {
		as := alerts(t, prom)
		var lost, down bool
		for _, a := range as {
			if a.State != "firing" {
				continue
			}
			switch a.Labels["alertname"] {
			case "LoomWorkerLost":
				v, err := strconv.ParseFloat(a.Value, 64)
				lost = err == nil && v == 1 // workers registered
			case "LoomWorkerDown":
				if a.Labels["worker"] != "w1" || a.Labels["instance"] != victim.HTTP {
					t.Errorf("LoomWorkerDown for %v, want worker w1 at %s", a.Labels, victim.HTTP)
				}
				down = true
			}
		}
		return lost && down, fmt.Sprintf("alerts %+v", as)
	})
	t.Logf("both alerts fired %s after the kill", time.Since(start).Round(100*time.Millisecond))
	for _, a := range alerts(t, prom) {
		if a.Labels["alertname"] == "LoomWorkerDown" && a.Labels["worker"] == "w0" {
			t.Errorf("the live worker w0 is reported down: %+v", a)
		}
	}
}

func alerts(t *testing.T, prom *promtest.Server) []promtest.Alert {
	t.Helper()
	as, err := prom.Alerts()
	if err != nil {
		t.Fatal(err)
	}
	return as
}

// waitUntil polls cond every 250ms until it holds, failing t with cond's
// last description after within.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s; %s", what, within, why)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// shippedPromConfig returns deploy/prometheus/prometheus.yml with 1s
// scrape and evaluation intervals and the static targets of each scrape
// job replaced by targets (jobs not named keep theirs; file_sd stays as
// shipped).
func shippedPromConfig(t *testing.T, targets map[string][]string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(promDir, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	g, _ := cfg["global"].(map[string]any)
	if g == nil {
		t.Fatal("prometheus.yml: no global section")
	}
	g["scrape_interval"], g["evaluation_interval"], g["scrape_timeout"] = "1s", "1s", "1s"
	jobs, _ := cfg["scrape_configs"].([]any)
	seen := map[string]bool{}
	for _, j := range jobs {
		jm, _ := j.(map[string]any)
		name, _ := jm["job_name"].(string)
		if ts, ok := targets[name]; ok {
			jm["static_configs"] = []any{map[string]any{"targets": ts}}
			seen[name] = true
		}
		if sd, ok := jm["file_sd_configs"].([]any); ok {
			for _, s := range sd {
				s.(map[string]any)["refresh_interval"] = "1s"
			}
		}
	}
	for name := range targets {
		if !seen[name] {
			t.Fatalf("prometheus.yml has no scrape job %s", name)
		}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
