package trainer

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
)

// TestScoreRetrievalPrior: a caption that is likely a priori (low loss
// under every image) must not win image→text retrieval for every image.
// With raw likelihood scoring it did, and image→text R@1 and exact match
// sat at exactly 1/N in qwen-vl, vila and lwm (issue 15).
func TestScoreRetrievalPrior(t *testing.T) {
	const n = 6
	loss := make([][]float64, n)
	captions := make([]string, n)
	for i := range n {
		captions[i] = fmt.Sprintf("caption %d", i)
		loss[i] = make([]float64, n)
		for j := range n {
			// Caption 0 is short and common: 1.0 under any image; the
			// others 3.0. Each image lowers its own caption's loss by 0.5.
			loss[i][j] = 3
			if j == 0 {
				loss[i][j] = 1
			}
			if i == j {
				loss[i][j] -= 0.5
			}
		}
	}
	t2i, i2t, exact := scoreRetrieval(loss, captions)
	if t2i != 1 || i2t != 1 || exact != 1 {
		t.Errorf("scoreRetrieval = text→image %.3f, image→text %.3f, exact %.3f; want 1, 1, 1 (each image makes its own caption likelier than the others do)", t2i, i2t, exact)
	}
	// Without image information (every row the same) nothing is found
	// beyond the first of tied candidates.
	for i := range n {
		for j := range n {
			loss[i][j] = float64(j)
		}
	}
	_, i2t, _ = scoreRetrieval(loss, captions)
	if i2t != 1.0/n {
		t.Errorf("image→text with losses that ignore the image = %.3f, want %.3f (only the tie's first pick is right)", i2t, 1.0/n)
	}
}

// recallAt ranks the true candidate among all: with the own image the
// third best for every caption, recall@1 is 0, recall@3 and @5 are 1.
func TestRecallAt(t *testing.T) {
	const n = 8
	loss := make([][]float64, n)
	for i := range n {
		loss[i] = make([]float64, n)
		for j := range n {
			loss[i][j] = 5
		}
	}
	for j := range n {
		// For caption j: images j+1 and j+2 beat its own image j.
		loss[(j+1)%n][j], loss[(j+2)%n][j], loss[j][j] = 1, 2, 3
	}
	for _, c := range []struct {
		k    int
		want float64
	}{{1, 0}, {2, 0}, {3, 1}, {5, 1}} {
		if got := recallAt(loss, c.k, false); got != c.want {
			t.Errorf("text→image recall@%d = %.3f, want %.3f", c.k, got, c.want)
		}
	}
	// recall@1 agrees with scoreRetrieval's.
	caps := make([]string, n)
	for i := range caps {
		caps[i] = fmt.Sprint(i)
	}
	t2i, i2t, _ := scoreRetrieval(loss, caps)
	if recallAt(loss, 1, false) != t2i || recallAt(loss, 1, true) != i2t {
		t.Errorf("recall@1 %.3f/%.3f, scoreRetrieval %.3f/%.3f", recallAt(loss, 1, false), recallAt(loss, 1, true), t2i, i2t)
	}
}

// ZeroShot scores every image against every class prompt, and its accuracy
// is the share of predictions equal to the labels; bad input is refused
// naming the sample or the prompt.
func TestZeroShot(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	r, err := NewRun(ctx, d.job(testManifest(t, "vila", 2, 4), 0, shard.NewMemStore()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var samples []shard.Sample
	for i := 0; i < 6; i++ {
		samples = append(samples, synth.Sample(shard.KindImageText, 3, i))
	}
	shapeOf := func(s shard.Sample) (string, error) {
		for _, sh := range synth.Shapes {
			if strings.Contains(s.Caption, " "+sh+" ") {
				return sh, nil
			}
		}
		return "", fmt.Errorf("no shape in %q", s.Caption)
	}
	acc, got, err := r.ZeroShot(ctx, samples, synth.Shapes, "a picture of a {}", shapeOf)
	if err != nil {
		t.Fatal(err)
	}
	hits := 0
	for i, s := range samples {
		if want, _ := shapeOf(s); got[i] == want {
			hits++
		}
	}
	if len(got) != len(samples) || acc != float64(hits)/float64(len(samples)) {
		t.Errorf("accuracy %.3f, predictions %v", acc, got)
	}
	if _, _, err := r.ZeroShot(ctx, samples, synth.Shapes, "a picture", shapeOf); err == nil || !strings.Contains(err.Error(), "no {}") {
		t.Errorf("prompt without {}: %v", err)
	}
	if _, _, err := r.ZeroShot(ctx, samples, []string{"circle", "hexagon"}, "a {}", shapeOf); err == nil || !strings.Contains(err.Error(), "is not one of the classes") {
		t.Errorf("label outside the classes: %v", err)
	}
}

// Embed returns BLIP-2 stage 1's L2-normalised ITC features, the same for
// a sample whatever the batch it is in, and refuses a model without them.
func TestEmbed(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	r, err := NewRun(ctx, d.job(testManifest(t, "blip2", 2, 4), 0, shard.NewMemStore()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var samples []shard.Sample
	for i := 0; i < 5; i++ {
		samples = append(samples, synth.Sample(shard.KindImageText, 3, i))
	}
	all, err := r.Embed(ctx, samples, 5)
	if err != nil {
		t.Fatal(err)
	}
	twos, err := r.Embed(ctx, samples, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Image) != 5 || len(all.Text) != 5 || len(all.Image[0]) != all.Queries*all.Dim || len(all.Text[0]) != all.Dim {
		t.Fatalf("embeddings: %d images of %d, %d texts of %d (queries %d, dim %d)", len(all.Image), len(all.Image[0]), len(all.Text), len(all.Text[0]), all.Queries, all.Dim)
	}
	for i := range samples {
		var n float64
		for _, v := range all.Text[i] {
			n += float64(v) * float64(v)
		}
		if math.Abs(n-1) > 1e-5 {
			t.Errorf("text %d: squared norm %v, want 1", i, n)
		}
		for k, v := range all.Image[i] {
			if math.Abs(float64(v-twos.Image[i][k])) > 1e-5 {
				t.Fatalf("sample %d: image embedding differs between batches of 5 and 2 at %d: %v vs %v", i, k, v, twos.Image[i][k])
			}
		}
	}
	v, err := NewRun(ctx, d.job(testManifest(t, "vila", 2, 4), 0, shard.NewMemStore()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.Embed(ctx, samples, 2); err == nil || !strings.Contains(err.Error(), "has no embeddings") {
		t.Errorf("vila: %v", err)
	}
}

// A manifest's eval block evaluates every eval.every steps on rank 0 and
// hands the results to the step's Progress as eval/* scalars.
func TestPeriodicEval(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	m := testManifest(t, "blip2", 3, 4)
	m.Eval = &api.EvalPolicy{URI: "s3://test/data/" + string(shard.KindImageText), Every: 2, Samples: 4}
	job := func() Job {
		j := d.job(m, 0, shard.NewMemStore())
		j.OpenDataset = func(ctx context.Context, ds api.Dataset) (shard.ObjectStore, string, error) {
			if ds.Name == "eval" { // the shared data, by the URI's prefix
				loc, err := shard.ParseLocation(ds.URI)
				return d.store, loc.Prefix, err
			}
			return d.open(ctx, ds)
		}
		return j
	}
	r, err := NewRun(ctx, job(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for s := 1; s <= 3; s++ {
		p, err := r.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if (p.Eval != nil) != (s == 2) {
			t.Fatalf("step %d: eval %v, want results at step 2 only", s, p.Eval)
		}
		if s == 2 && (p.Eval["eval/chance"] != 0.25 || p.Eval["eval/caption_loss"] <= 0 || p.Eval["eval/text_to_image_r5"] != 1) {
			t.Errorf("step 2: eval %v (4 pairs: chance 0.25, recall@5 1)", p.Eval)
		}
	}
	m.Eval.URI = "s3://test/data/nothing-here"
	r2, err := NewRun(ctx, job(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	r2.Step(ctx)
	if _, err := r2.Step(ctx); err == nil || !strings.Contains(err.Error(), "eval.uri s3://test/data/nothing-here") {
		t.Errorf("a missing eval dataset: %v", err)
	}
}
