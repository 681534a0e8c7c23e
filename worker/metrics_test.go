package worker

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/loomtrain/loom/internal/promtest"
	"github.com/loomtrain/loom/trainer"
)

// TestMetricsPage: after a step and a checkpoint every series is on the
// page, promtool's linter accepts it, and a NaN loss is exported as NaN
// (the LoomLossNaN alert of deploy/prometheus/alerts.yml matches on it).
func TestMetricsPage(t *testing.T) {
	m := newMetrics()
	m.observeStep(trainer.Progress{Step: 3, Loss: math.NaN(), Terms: map[string]float64{"lm": 2.5}, TokensPerSec: 10, StepTime: time.Second, CommWait: time.Millisecond})
	m.observeCheckpoint(trainer.CheckpointResult{Blocked: time.Millisecond})
	m.generations.WithLabelValues("done").Inc()
	m.reports.WithLabelValues("ok").Inc()
	m.failureReports.WithLabelValues("ok").Inc()
	srv := httptest.NewServer(handler(m, &health{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{`loom_worker_loss{term="total"} NaN`, `loom_worker_loss{term="lm"} 2.5`, "loom_worker_step 3", "loom_worker_steps_total 1",
		`loom_worker_checkpoints_total{result="committed"} 1`, "loom_worker_checkpoint_commit_seconds_bucket"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	promtest.CheckMetrics(t, "a worker's /metrics", body)
}
