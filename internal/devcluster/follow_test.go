package devcluster

import (
	"bytes"
	"strings"
	"testing"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

// TestProgressView feeds the view a short LWM run as the coordinator
// reports it: a checkpoint every step, a stage change, the last step's
// report after its checkpoint. Each stage shows its own losses, with the
// weights that make the total, and its checkpoints on one line (issue
// 15: stale per-stage losses, totals unequal to their terms, a
// checkpoint line per step).
func TestProgressView(t *testing.T) {
	uri := func(k shard.Kind) string { return "s3://loom/datasets/" + string(k) }
	m, err := trainer.ExampleManifest("lwm", "tiny", uri, 3, 8)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	v := NewProgressView(&out, m)
	job := func(stage int, step int64, losses map[string]float64) *loompb.Job {
		return &loompb.Job{State: "running", Stage: int32(stage), StageName: m.Stages[stage].Name, Step: step, Losses: losses}
	}
	l := func(loss, ce float64) map[string]float64 { return map[string]float64{"loss": loss, "ce_text": ce} }
	ev := func(kind, msg string, j *loompb.Job) { v.event(&loompb.JobEvent{Kind: kind, Message: msg, State: j}) }
	ev("scheduled", "generation 1: stage text-32k", job(0, 0, nil))
	ev("progress", "", job(0, 1, l(2.5, 5)))
	ev("checkpoint", "committed step 1 (3 objects)", job(0, 1, l(2.5, 5)))
	ev("checkpoint", "committed step 2 (3 objects)", job(0, 2, l(2.5, 5)))
	ev("progress", "", job(0, 2, l(2.25, 4.5)))
	ev("checkpoint", "committed step 3 (3 objects)", job(0, 3, l(2.25, 4.5)))
	ev("progress", "", job(0, 3, l(2, 4))) // after its checkpoint
	// The coordinator clears the losses at a new stage.
	ev("scheduled", "generation 2: stage text-128k, from step 3 (stage text-32k done)", job(1, 3, nil))
	ev("checkpoint", "committed step 4 (3 objects)", job(1, 4, nil))
	ev("progress", "", job(1, 4, l(1.75, 3.5)))
	v.done()
	got := out.String()
	if first, last, ok := v.StageLosses(0); !ok || first != 2.5 || last != 2 {
		t.Errorf("stage text-32k losses: first %v last %v (%v), want 2.5 and 2 (the last step's, reported after its checkpoint)\n%s", first, last, ok, got)
	}
	if first, _, ok := v.StageLosses(1); !ok || first != 1.75 {
		t.Errorf("stage text-128k's first loss %v (%v), want 1.75, its own\n%s", first, ok, got)
	}
	for _, want := range []string{
		"text-32k step 3/3 loss 2.0000 = 0.5×ce_text 4.000",
		"  [checkpoint] committed steps 1, 2, 3\n  [scheduled] generation 2",
		"  [checkpoint] committed step 4\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("view output lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "[checkpoint]"); n != 2 {
		t.Errorf("%d checkpoint lines, want 2 (one per stage):\n%s", n, got)
	}
}

// TestSameJob: a kept data dir's job is the same when only the name and
// the checkpoints its init resolved to differ.
func TestSameJob(t *testing.T) {
	uri := func(k shard.Kind) string { return "s3://loom/datasets/" + string(k) }
	m, err := trainer.ExampleManifest("vila", "tiny", uri, 3, 8)
	if err != nil {
		t.Fatal(err)
	}
	m.Init = map[string]api.InitSource{"llm": {Job: "vila-tiny-text"}}
	stored := *m
	stored.Name = "vila-tiny-2"
	stored.Init = map[string]api.InitSource{"llm": {Job: "vila-tiny-text", Step: 2}}
	job := func(m *api.Manifest) *loompb.Job {
		y, err := m.Normalized()
		if err != nil {
			t.Fatal(err)
		}
		return &loompb.Job{Name: m.Name, ManifestYaml: y}
	}
	if !sameJob(job(&stored), m) {
		t.Errorf("sameJob: a stored copy with a resolved init step is not the same job")
	}
	other := stored
	other.Init = map[string]api.InitSource{"llm": {Job: "vila-tiny-text-2"}}
	if sameJob(job(&other), m) {
		t.Errorf("sameJob: a job whose LLM starts from another job is the same")
	}
	longer := *m
	longer.Stages = append([]api.Stage(nil), m.Stages...)
	longer.Stages[0].Steps++
	if sameJob(job(&longer), m) {
		t.Errorf("sameJob: a job with more steps is the same")
	}
}
