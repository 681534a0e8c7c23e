package trainer

import (
	"context"
	"testing"

	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
)

// heldOut returns image-text pairs generated under another seed than the
// training data.
func heldOut(n int) []shard.Sample {
	out := make([]shard.Sample, n)
	for i := range out {
		out[i] = synth.Sample(shard.KindImageText, 99, i)
	}
	return out
}

// TestLearns trains VILA's projector-alignment stage on synthetic
// captions of coloured shapes: the loss must fall by a fifth, and the
// held-out evaluation runs (its numbers are logged).
func TestLearns(t *testing.T) {
	d := sharedData(t)
	ctx := context.Background()
	m := testManifest(t, "vila", 30, 8)
	m.Stages[0].Overrides.LR = ptr(1e-2)
	m.Stages[0].Overrides.Trainable = []string{"projector", "llm"}
	run, err := NewRun(ctx, d.job(m, 0, shard.NewMemStore()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	before, err := run.Evaluate(ctx, heldOut(8))
	if err != nil {
		t.Fatal(err)
	}
	var first, last float64
	for s := 0; !run.Done(); s++ {
		p, err := run.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s < 5 {
			first += p.Loss / 5
		}
		if s >= 25 {
			last += p.Loss / 5
		}
	}
	after, err := run.Evaluate(ctx, heldOut(8))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loss %.3f → %.3f; held-out caption loss %.3f → %.3f, R@1 %.2f → %.2f (chance %.2f), exact match %.2f → %.2f",
		first, last, before.CaptionLoss, after.CaptionLoss, before.Retrieval, after.Retrieval, after.Chance, before.ExactMatch, after.ExactMatch)
	if last > 0.8*first {
		t.Errorf("mean loss of the last 5 steps %.3f, first 5 %.3f: want a fall of at least 20%%", last, first)
	}
	if after.CaptionLoss >= before.CaptionLoss {
		t.Errorf("held-out caption loss %.3f → %.3f: want it to fall", before.CaptionLoss, after.CaptionLoss)
	}
}
