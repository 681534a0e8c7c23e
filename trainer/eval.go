package trainer

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/shard"
)

// EvalResult is what Evaluate measured on held-out image-text pairs.
type EvalResult struct {
	Kind EvalKind
	N    int // pairs evaluated
	// Retrieval is text→image recall@1: the share of captions that are
	// most likely under their own image among all N images (the caption's
	// prior likelihood cancels, as the caption is fixed). ImageToText is
	// image→text recall@1: the share of images whose own caption scores
	// best among all N captions, where a caption's score is its loss given
	// the image minus its mean loss over all N images (an estimate of its
	// prior), so that a caption likely a priori does not win for every
	// image. Chance is 1/N.
	Retrieval, ImageToText, Chance float64
	// CaptionLoss is the mean caption loss of the true pairs (ITG for
	// BLIP-2 stage 1, the LM loss on the caption otherwise).
	CaptionLoss float64
	// TextToImageAt5 and At10, ImageToTextAt5 and At10 are recall@5 and
	// recall@10, ranked as the recall@1 above (recallAt).
	TextToImageAt5, TextToImageAt10, ImageToTextAt5, ImageToTextAt10 float64
	// ExactMatch is the share of images for which the best-scoring caption
	// (scored as for ImageToText) is word for word the reference
	// (identical captions of different images count as correct, unlike
	// ImageToText).
	ExactMatch float64
}

// Evaluate scores held-out image-text pairs with the model as it stands
// (no gradients, no augmentation). Every image is paired with every
// caption and each pair is scored by the model's caption loss given the
// image: the conditional likelihood a generative model assigns, and for
// BLIP-2 stage 1 the image-grounded text generation (ITG) loss, since
// models.Model exposes losses, not embeddings. N pairs take N² forward
// passes; keep N small (8–32).
func (r *Run) Evaluate(ctx context.Context, samples []shard.Sample) (EvalResult, error) {
	res := EvalResult{Kind: r.stage.Spec.Eval, N: len(samples)}
	if len(samples) < 2 {
		return res, fmt.Errorf("trainer: evaluate: %d samples, want at least 2", len(samples))
	}
	captions := make([]string, len(samples))
	for i, sm := range samples {
		captions[i] = sm.Caption
	}
	loss, err := r.pairLosses(ctx, samples, captions)
	if err != nil {
		return res, err
	}
	for i := range samples {
		res.CaptionLoss += loss[i][i]
	}
	res.Retrieval, res.ImageToText, res.ExactMatch = scoreRetrieval(loss, captions)
	res.TextToImageAt5, res.TextToImageAt10 = recallAt(loss, 5, false), recallAt(loss, 10, false)
	res.ImageToTextAt5, res.ImageToTextAt10 = recallAt(loss, 5, true), recallAt(loss, 10, true)
	n := float64(len(samples))
	res.Chance, res.CaptionLoss = 1/n, res.CaptionLoss/n
	return res, nil
}

// CaptionLoss is the mean caption loss of the true pairs (as Evaluate's
// CaptionLoss), in len(samples) forward passes.
func (r *Run) CaptionLoss(ctx context.Context, samples []shard.Sample) (float64, error) {
	if len(samples) == 0 {
		return 0, fmt.Errorf("trainer: caption loss: no samples")
	}
	var sum float64
	for _, s := range samples {
		l, err := r.pairLosses(ctx, []shard.Sample{s}, []string{s.Caption})
		if err != nil {
			return 0, err
		}
		sum += l[0][0]
	}
	return sum / float64(len(samples)), nil
}

// pairLosses returns loss[i][j], the caption loss of captions[j] given the
// image of samples[i].
func (r *Run) pairLosses(ctx context.Context, samples []shard.Sample, captions []string) ([][]float64, error) {
	b := *r.builder
	b.augment, b.understand = false, true
	loss := make([][]float64, len(samples))
	for i, si := range samples {
		if si.Image == nil {
			return nil, fmt.Errorf("trainer: evaluate: sample %s: want an image-text pair", si.ID)
		}
		loss[i] = make([]float64, len(captions))
		for j, cj := range captions {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			pair := shard.Sample{ID: fmt.Sprintf("%s×%d", si.ID, j), Image: si.Image, Caption: cj}
			rw, err := b.build(shard.KindImageText, pair, int64(i))
			if err != nil {
				return nil, fmt.Errorf("trainer: evaluate: %w", err)
			}
			batch, err := assemble([]row{rw}, 0)
			if err != nil {
				return nil, err
			}
			var out models.Output
			ferr := kernels.Catch(func() { out, err = r.model.Forward(nil, batch) })
			if ferr != nil {
				err = ferr
			}
			if err != nil {
				return nil, fmt.Errorf("trainer: evaluate: pair %s: %w", pair.ID, err)
			}
			v, ok := out.Terms["itg"]
			if !ok {
				v, ok = out.Terms["ce_text"]
			}
			if !ok {
				v = out.Loss.Item()
			}
			loss[i][j] = float64(v)
		}
	}
	return loss, nil
}

// ZeroShot classifies each sample's image among classes: class c is
// described by prompt with "{}" replaced by its name ("a photo of a {}"),
// and each image takes the class whose description it makes most likely
// relative to that description's mean likelihood over the images (as
// image→text retrieval ranks captions, see scoreRetrieval). label names
// each sample's true class. It returns the accuracy and the predicted
// class of every sample. len(samples) × len(classes) forward passes.
func (r *Run) ZeroShot(ctx context.Context, samples []shard.Sample, classes []string, prompt string, label func(shard.Sample) (string, error)) (float64, []string, error) {
	if len(classes) < 2 {
		return 0, nil, fmt.Errorf("trainer: zero-shot: %d classes, want at least 2", len(classes))
	}
	if !strings.Contains(prompt, "{}") {
		return 0, nil, fmt.Errorf("trainer: zero-shot: prompt %q has no {} for the class name", prompt)
	}
	want := make([]string, len(samples))
	for i, s := range samples {
		l, err := label(s)
		if err != nil {
			return 0, nil, fmt.Errorf("trainer: zero-shot: sample %s: %w", s.ID, err)
		}
		if !slices.Contains(classes, l) {
			return 0, nil, fmt.Errorf("trainer: zero-shot: sample %s: label %q is not one of the classes %s", s.ID, l, strings.Join(classes, ", "))
		}
		want[i] = l
	}
	texts := make([]string, len(classes))
	for c, name := range classes {
		texts[c] = strings.ReplaceAll(prompt, "{}", name)
	}
	loss, err := r.pairLosses(ctx, samples, texts)
	if err != nil {
		return 0, nil, err
	}
	prior := make([]float64, len(classes))
	for c := range classes {
		for i := range samples {
			prior[c] += loss[i][c] / float64(len(samples))
		}
	}
	got := make([]string, len(samples))
	hits := 0
	for i := range samples {
		best := 0
		for c := range classes {
			if loss[i][c]-prior[c] < loss[i][best]-prior[best] {
				best = c
			}
		}
		got[i] = classes[best]
		if got[i] == want[i] {
			hits++
		}
	}
	return float64(hits) / float64(len(samples)), got, nil
}

// recallAt is recall@k from loss[i][j] (caption j given image i): for
// text→image the share of captions whose own image is among the k images
// that make them most likely; for image→text (byImage) the share of images
// whose own caption is among the k best captions, scored relative to each
// caption's mean loss as in scoreRetrieval. A tie ranks the lower index
// first, as recall@1 does.
func recallAt(loss [][]float64, k int, byImage bool) float64 {
	n := len(loss)
	prior := make([]float64, n)
	for j := range n {
		for i := range n {
			prior[j] += loss[i][j] / float64(n)
		}
	}
	score := func(q, c int) float64 { // candidate c for query q
		if byImage {
			return loss[q][c] - prior[c]
		}
		return loss[c][q]
	}
	hits := 0
	for q := range n {
		rank := 0
		for c := range n {
			if c != q && (score(q, c) < score(q, q) || (score(q, c) == score(q, q) && c < q)) {
				rank++
			}
		}
		if rank < k {
			hits++
		}
	}
	return float64(hits) / float64(n)
}

// scoreRetrieval returns text→image and image→text recall@1 and the
// exact-match rate from loss[i][j], the loss of caption j given image i,
// where image i's own caption is caption i.
//
// Text→image ranks the images for a caption by that caption's loss under
// each: the caption is fixed, so its prior cancels. Image→text cannot
// rank raw losses: with likelihood scoring every image picks the caption
// that is most likely a priori (short, common words), and recall sits at
// exactly 1/N. So each caption's loss is taken relative to its mean loss
// over all N images, loss[i][j] − mean_k loss[k][j]: how much more likely
// image i makes caption j than images do on average (a pointwise mutual
// information estimate, with the mean over the evaluated images as the
// caption's prior).
func scoreRetrieval(loss [][]float64, captions []string) (t2i, i2t, exact float64) {
	n := len(loss)
	prior := make([]float64, n)
	for j := range n {
		for i := range n {
			prior[j] += loss[i][j]
		}
		prior[j] /= float64(n)
	}
	var hitsT, hitsI, hitsE int
	for j := range n {
		best := 0
		for i := range n {
			if loss[i][j] < loss[best][j] {
				best = i
			}
		}
		if best == j {
			hitsT++
		}
	}
	for i := range n {
		best := 0
		for j := range n {
			if loss[i][j]-prior[j] < loss[i][best]-prior[best] {
				best = j
			}
		}
		if best == i {
			hitsI++
		}
		if captions[best] == captions[i] {
			hitsE++
		}
	}
	return float64(hitsT) / float64(n), float64(hitsI) / float64(n), float64(hitsE) / float64(n)
}

// Embeddings are the image and text embeddings of samples (Run.Embed).
type Embeddings struct {
	Queries, Dim int         // an image is Queries vectors of Dim, a text one
	Image, Text  [][]float32 // per sample: [Queries·Dim], [Dim]; L2-normalised
}

// embedder is a model that exposes its embeddings (BLIP-2 stage 1).
type embedder interface {
	Embed(b *models.Batch) (models.ContrastFeatures, error)
}

// Embed returns the embeddings the model compares image-text pairs with,
// batch rows at a time, without dropout or augmentation: BLIP-2 stage 1's
// ITC features (the Q-Former's projected query outputs and text [CLS]).
// Other models expose losses, not embeddings, and are refused.
func (r *Run) Embed(ctx context.Context, samples []shard.Sample, batch int) (*Embeddings, error) {
	e, ok := r.model.(embedder)
	if !ok || r.stage.Spec.Format != FormatQFormerCaption {
		return nil, fmt.Errorf("trainer: embed: stage %s of a %s model has no embeddings (only BLIP-2's representation stage, whose ITC compares them: name a checkpoint of that stage, JOB@STEP)", r.stage.Name, r.cfg.Family)
	}
	b := *r.builder
	b.augment = false
	c := r.cfg.QFormer
	out := &Embeddings{Queries: c.Queries, Dim: c.EmbedDim}
	for lo := 0; lo < len(samples); lo += max(batch, 1) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var rows []row
		for i := lo; i < min(lo+max(batch, 1), len(samples)); i++ {
			rw, err := b.build(shard.KindImageText, samples[i], int64(i))
			if err != nil {
				return nil, fmt.Errorf("trainer: embed: %w", err)
			}
			rows = append(rows, rw)
		}
		bt, err := assemble(rows, 0)
		if err != nil {
			return nil, err
		}
		var f models.ContrastFeatures
		ferr := kernels.Catch(func() { f, err = e.Embed(bt) })
		if ferr != nil {
			err = ferr
		}
		if err != nil {
			return nil, fmt.Errorf("trainer: embed: samples %d–%d: %w", lo, lo+len(rows)-1, err)
		}
		iw, tw := c.Queries*c.EmbedDim, c.EmbedDim
		for k := range rows {
			out.Image = append(out.Image, slices.Clone(f.Image[k*iw:(k+1)*iw]))
			out.Text = append(out.Text, slices.Clone(f.Text[k*tw:(k+1)*tw]))
		}
	}
	return out, nil
}

// ReadPairs reads the first n rows of the image-text dataset under prefix,
// in shard order: the held-out pairs of loom eval and of a manifest's
// eval block.
func ReadPairs(ctx context.Context, store shard.ObjectStore, prefix string, n int) ([]shard.Sample, error) {
	r, err := shard.OpenReader(ctx, store, prefix, shard.ReaderOptions{})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	ix := r.Index()
	if ix.Kind != shard.KindImageText {
		return nil, fmt.Errorf("a %s dataset; evaluation reads image-text pairs", ix.Kind)
	}
	if ix.Rows < int64(n) {
		return nil, fmt.Errorf("%d rows, fewer than the %d to evaluate", ix.Rows, n)
	}
	var out []shard.Sample
	for s, sh := range ix.Shards {
		for row := int64(0); row < sh.Rows && len(out) < n; row++ {
			smp, err := r.Get(ctx, s, row)
			if err != nil {
				return nil, err
			}
			out = append(out, smp)
		}
	}
	return out, nil
}

// periodicEval runs the manifest's eval block after a step, on rank 0 in
// the stages that evaluate, every eval.every steps: the retrieval
// evaluation of its pairs (read once), as eval/* scalars for the step's
// metrics. nil when this step has none.
func (r *Run) periodicEval(ctx context.Context) (map[string]float64, error) {
	e := r.job.Manifest.Eval
	if e == nil || r.job.Rank != 0 || r.stage.Spec.Eval == "" || r.sp != nil || e.Every < 1 || r.step%e.Every != 0 {
		return nil, nil
	}
	if r.evalPairs == nil {
		store, prefix, err := openNamed(ctx, r.job, "eval", e.URI)
		if err != nil {
			return nil, fmt.Errorf("trainer: eval.uri %s: %w", e.URI, err)
		}
		if r.evalPairs, err = ReadPairs(ctx, store, prefix, max(e.Samples, 2)); err != nil {
			return nil, fmt.Errorf("trainer: eval.uri %s: %w", e.URI, err)
		}
	}
	res, err := r.Evaluate(ctx, r.evalPairs)
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		"eval/text_to_image_r1": res.Retrieval, "eval/image_to_text_r1": res.ImageToText,
		"eval/text_to_image_r5": res.TextToImageAt5, "eval/image_to_text_r5": res.ImageToTextAt5,
		"eval/caption_loss": res.CaptionLoss, "eval/chance": res.Chance,
	}, nil
}
