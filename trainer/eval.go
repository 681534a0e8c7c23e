package trainer

import (
	"context"
	"fmt"

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
	b := *r.builder
	b.augment, b.understand = false, true
	loss := make([][]float64, len(samples))
	for i, si := range samples {
		if si.Image == nil {
			return res, fmt.Errorf("trainer: evaluate: sample %s: want an image-text pair", si.ID)
		}
		loss[i] = make([]float64, len(samples))
		for j, sj := range samples {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			pair := shard.Sample{ID: si.ID + "×" + sj.ID, Image: si.Image, Caption: sj.Caption}
			rw, err := b.build(shard.KindImageText, pair, int64(i))
			if err != nil {
				return res, fmt.Errorf("trainer: evaluate: %w", err)
			}
			batch, err := assemble([]row{rw}, 0)
			if err != nil {
				return res, err
			}
			var out models.Output
			ferr := kernels.Catch(func() { out, err = r.model.Forward(nil, batch) })
			if ferr != nil {
				err = ferr
			}
			if err != nil {
				return res, fmt.Errorf("trainer: evaluate: pair %s: %w", pair.ID, err)
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
	captions := make([]string, len(samples))
	for i, sm := range samples {
		captions[i] = sm.Caption
		res.CaptionLoss += loss[i][i]
	}
	res.Retrieval, res.ImageToText, res.ExactMatch = scoreRetrieval(loss, captions)
	n := float64(len(samples))
	res.Chance, res.CaptionLoss = 1/n, res.CaptionLoss/n
	return res, nil
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
