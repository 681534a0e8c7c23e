package main

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/internal/devcluster"
)

// checkHistory checks a finished job's metric history as a coordinator
// serves it: every step from 1 to the last exactly once and in order (the
// runs are short enough for one point per step), a finite loss and a
// step-time breakdown for each, and points of the job's last generation.
func checkHistory(t *testing.T, c *devcluster.Cluster, j *loompb.Job) {
	t.Helper()
	cc, err := c.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := loompb.NewJobsClient(cc).GetMetrics(ctx, &loompb.GetMetricsRequest{Job: j.Name, Series: []string{"loss", "step_time", "data_wait", "comm_wait"}})
	if err != nil {
		t.Fatalf("job %s: GetMetrics: %v", j.Name, err)
	}
	got := map[string]*loompb.MetricSeries{}
	for _, s := range resp.Series {
		got[s.Name] = s
	}
	loss := got["loss"]
	if loss == nil || len(got) != 4 {
		t.Fatalf("job %s: history has series %v, want loss, step_time, data_wait and comm_wait", j.Name, resp.Series)
	}
	next, lastGen := int64(1), int64(0)
	for _, p := range loss.Points {
		if p.FirstStep != next || p.Step != next {
			t.Fatalf("job %s: loss point covers steps %d–%d, want step %d (every step once, in order)", j.Name, p.FirstStep, p.Step, next)
		}
		if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) || p.Value <= 0 {
			t.Errorf("job %s: loss at step %d = %v", j.Name, p.Step, p.Value)
		}
		next++
		lastGen = p.Generation
	}
	if next-1 != j.TotalSteps {
		t.Errorf("job %s: history ends at step %d, want %d", j.Name, next-1, j.TotalSteps)
	}
	if lastGen != j.Generation {
		t.Errorf("job %s: the last point is of generation %d, the job ended in %d", j.Name, lastGen, j.Generation)
	}
	for i, p := range got["step_time"].Points {
		if p.Value <= 0 || got["data_wait"].Points[i].Value+got["comm_wait"].Points[i].Value > p.Value {
			t.Errorf("job %s: step %d took %gs with %gs data wait and %gs comm wait; want the waits within the step", j.Name, p.Step, p.Value, got["data_wait"].Points[i].Value, got["comm_wait"].Points[i].Value)
		}
	}
}
