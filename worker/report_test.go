package worker

import (
	"slices"
	"testing"
	"time"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

// stepsReported returns the steps of the step metrics the coordinator
// accepted from worker id, with reports and checkpoint commits, in the
// order they arrived.
func stepsReported(f *fakeCoordinator, id string) []int64 {
	var out []int64
	for _, r := range f.reports {
		if r.WorkerId == id {
			for _, s := range r.Steps {
				out = append(out, s.Step)
			}
		}
	}
	for _, c := range f.commits {
		if c.WorkerId == id {
			for _, s := range c.Steps {
				out = append(out, s.Step)
			}
		}
	}
	return out
}

// Rank 0's reports and commits carry the metrics of every step, even
// though a report supersedes the unsent ones; rank 1 sends none.
func TestReportsCarryEveryStepsMetrics(t *testing.T) {
	coord := newFakeCoordinator()
	store := shard.NewMemStore()
	w0 := startWorker(t, "w0", coord, store, 0)
	w1 := startWorker(t, "w1", coord, store, 0)
	ws := []*testWorker{w0, w1}
	coord.assign("w0", assignment(1, 0, 0, ws, nil, 0, 6))
	coord.assign("w1", assignment(1, 0, 1, ws, nil, 0, 6))
	if !coord.waitFor(20*time.Second, func(f *fakeCoordinator) bool {
		return slices.Contains(stepsReported(f, "w0"), 6)
	}) {
		t.Fatalf("rank 0's step metrics did not reach step 6: %v", stepsReported(coord, "w0"))
	}
	coord.mu.Lock()
	defer coord.mu.Unlock()
	seen := map[int64]bool{}
	for _, s := range stepsReported(coord, "w0") {
		seen[s] = true
	}
	for s := int64(1); s <= 6; s++ {
		if !seen[s] {
			t.Errorf("step %d's metrics never reached the coordinator: %v", s, stepsReported(coord, "w0"))
		}
	}
	if s := stepsReported(coord, "w1"); len(s) != 0 {
		t.Errorf("rank 1 reported step metrics %v, want none", s)
	}
	var last *loompb.StepMetrics // step 6's metrics, from a report or the final commit
	for _, r := range coord.reports {
		for _, m := range r.Steps {
			if m.Step == 6 {
				last = m
			}
		}
	}
	for _, c := range coord.commits {
		for _, m := range c.Steps {
			if m.Step == 6 {
				last = m
			}
		}
	}
	for _, k := range []string{"loss", "lm", "lr", "grad_norm", "tokens_per_sec", "step_time", "comm_wait", "data_wait"} {
		if _, ok := last.Values[k]; !ok {
			t.Errorf("step metrics %v lack %q", last.Values, k)
		}
	}
	if v := last.Values["loss"]; v != 1.0/6 {
		t.Errorf("step 6's loss = %g, want 1/6", v)
	}
}

func TestReporterKeepsStepsUntilConfirmed(t *testing.T) {
	r := &reporter{wake: make(chan struct{}, 1)}
	for s := int64(1); s <= maxStepRecords+10; s++ {
		r.put(&loompb.ReportProgressRequest{Step: s}, &loompb.StepMetrics{Step: s})
	}
	span := func(req *loompb.ReportProgressRequest) [2]int64 {
		if req == nil || len(req.Steps) == 0 {
			return [2]int64{}
		}
		return [2]int64{req.Steps[0].Step, req.Steps[len(req.Steps)-1].Step}
	}
	req := r.take()
	if got := span(req); len(req.Steps) != maxStepRecords || got != [2]int64{11, maxStepRecords + 10} || req.Step != maxStepRecords+10 {
		t.Fatalf("took report of step %d with step metrics %v (%d); want the newest %d, 11–%d", req.Step, got, len(req.Steps), maxStepRecords, maxStepRecords+10)
	}
	if again := r.take(); again != nil {
		t.Fatalf("take with nothing new = %v, want nil", again)
	}
	// Unconfirmed: the next report carries them again, with the new one.
	r.put(&loompb.ReportProgressRequest{Step: 267}, &loompb.StepMetrics{Step: 267})
	if got := span(r.take()); got != [2]int64{12, 267} {
		t.Fatalf("next report carries %v, want 12–267", got)
	}
	// A checkpoint commit confirmed up to 200.
	r.confirm(200)
	if u := r.unconfirmed(); len(u) != 67 || u[0].Step != 201 {
		t.Fatalf("after confirming 200: %d unconfirmed from %d, want 67 from 201", len(u), u[0].Step)
	}
	// The report failed: the metrics go again, in a copy of the last
	// report, even with no newer step.
	r.failed()
	again := r.take()
	if got := span(again); got != [2]int64{201, 267} || again.Step != 267 {
		t.Fatalf("take after a failure = %v (report of step %d), want a copy of the step-267 report with 201–267", got, again.Step)
	}
	r.confirm(267)
	if r.take() != nil || len(r.unconfirmed()) != 0 {
		t.Error("after confirming everything there is still something to send")
	}
}

// A step that ran the manifest's evaluation sends its eval/* results with
// the step's other scalars, into the job's metric history.
func TestStepMetricsCarryEval(t *testing.T) {
	rec := stepMetrics(trainer.Progress{Step: 4, Loss: 2, Eval: map[string]float64{"eval/text_to_image_r1": 0.5, "eval/caption_loss": 1.25}}, time.Unix(10, 0))
	if rec.Values["eval/text_to_image_r1"] != 0.5 || rec.Values["eval/caption_loss"] != 1.25 || rec.Values["loss"] != 2 {
		t.Errorf("step metrics %v", rec.Values)
	}
}
