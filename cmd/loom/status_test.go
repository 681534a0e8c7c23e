package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

// TestRenderJobLossWeights: loom status JOB shows the total loss as the
// weighted sum it is (issue 15: "loss 1.0104 (ce_text 2.016)" with no
// weights).
func TestRenderJobLossWeights(t *testing.T) {
	m, err := trainer.ExampleManifest("lwm", "tiny", func(k shard.Kind) string { return "s3://loom/datasets/" + string(k) }, 3, 8)
	if err != nil {
		t.Fatal(err)
	}
	y, err := m.Normalized()
	if err != nil {
		t.Fatal(err)
	}
	j := &loompb.Job{Name: m.Name, Recipe: "lwm", State: "running", Stages: int32(len(m.Stages)), StageName: m.Stages[0].Name,
		Step: 2, TotalSteps: m.TotalSteps(), Losses: map[string]float64{"loss": 1.0104, "ce_text": 2.0208}, ManifestYaml: y}
	var b bytes.Buffer
	renderJob(&b, j, time.Now())
	if want := "losses    loss 1.0104 = 0.5×ce_text 2.021"; !strings.Contains(b.String(), want) {
		t.Errorf("loom status output lacks %q:\n%s", want, b.String())
	}
}

// TestRenderJobCorruptCheckpoint: a checkpoint set aside as corrupt shows
// in loom status with what the worker found (issue 16 part 5).
func TestRenderJobCorruptCheckpoint(t *testing.T) {
	now := time.Now()
	j := &loompb.Job{Name: "j", Recipe: "blip2", State: "running", Stages: 1, StageName: "representation", Step: 100, TotalSteps: 300,
		Checkpoints:        []*loompb.Checkpoint{{Step: 100, CommittedUnixMs: now.UnixMilli()}},
		CorruptCheckpoints: []*loompb.Checkpoint{{Step: 200, Corrupt: "w1 failed: checkpoint at step 200 is corrupt: sha256 mismatch"}}}
	var b bytes.Buffer
	renderJob(&b, j, now)
	if want := "corrupt     step 200, set aside (objects kept): w1 failed: checkpoint at step 200 is corrupt: sha256 mismatch"; !strings.Contains(b.String(), want) {
		t.Errorf("loom status output lacks %q:\n%s", want, b.String())
	}
}
