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
