package trainer

import (
	"context"
	"fmt"
	"time"

	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models"
)

// BLIP-2 stage 1 contrasts every image with every text of the global
// batch, across the workers (LAVIS concat_all_gather), so that the
// negatives, and the weights, are those one worker computes with the whole
// global batch at once, whatever the world size and micro_batch.
//
// Without gradient accumulation (one micro-batch per rank) the ranks'
// micro-batches form one models.Group whose features travel through an
// all-gather with gradient (gather). With accumulation the micro-batches
// are not all live at once, so the group is contrasted ahead of time
// (GradCache, Gao et al. 2021; contrast): every micro-batch's features
// without a graph, all-gathered, ITC and its gradient with respect to
// every feature computed once, identically on every rank; each
// micro-batch then runs forward and backward with the graph and
// back-propagates its rows of that gradient. The global batch must divide
// by the world size, so that every rank has micro-batches of the same
// sizes.

// collectiveFailure carries a failed collective out of a model's forward
// or backward pass (models.Group.Gather may panic; Step recovers it).
type collectiveFailure struct{ err error }

// catchStep runs f, a step's forward/backward work, and returns its error,
// a shape error it panicked with (kernels.Catch), or the error of a
// collective that failed inside it (collectiveFailure). Other panics
// propagate.
func catchStep(f func() error) (err error) {
	ferr := kernels.Catch(func() {
		defer func() {
			if p := recover(); p != nil {
				cf, ok := p.(collectiveFailure)
				if !ok {
					panic(p)
				}
				err = cf.err
			}
		}()
		err = f()
	})
	if ferr != nil {
		return ferr
	}
	return err
}

// gatherGroup is the per-micro-batch exchange of BLIP-2 stage 1.
type gatherGroup struct {
	ctx   context.Context
	comm  *collective.Comm
	now   func() time.Time
	wait  *time.Duration // communication time, added to
	rank  int
	world int
	// hold and release bracket each recorded gather, from its forward to
	// the end of its backward collective, when the gradient all-reduce
	// overlaps this backward pass (gradReduce.holdBuckets); nil otherwise.
	hold, release func()
}

// allReduce sums buf over the ranks, timing it; a failure panics with
// collectiveFailure.
func (g *gatherGroup) allReduce(buf []float32, what string) {
	t0 := g.now()
	err := g.comm.AllReduce(g.ctx, buf, collective.Sum)
	*g.wait += g.now().Sub(t0)
	if err != nil {
		panic(collectiveFailure{fmt.Errorf("BLIP-2 group %s: %w", what, err)})
	}
}

// group builds the models.Group of a micro-batch of n rows holding tokens
// and image keys (nil: none): the rows of every rank's micro-batch, rank
// by rank.
func (g *gatherGroup) group(tokens [][]int32, keys []uint64, seed uint64) *models.Group {
	all, off := g.tokens(tokens)
	size := len(all)
	return &models.Group{Offset: off, Tokens: all, ImageKeys: g.keys(keys, len(tokens)), Seed: seed, Gather: func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		return g.gather(tp, x, off, size)
	}}
}

// tokens all-gathers the ranks' token rows (the same number on every
// rank), rank by rank, and returns them with the index of this rank's
// first row.
func (g *gatherGroup) tokens(tokens [][]int32) ([][]int32, int) {
	if g.world == 1 {
		return tokens, 0
	}
	n := len(tokens)
	size, off := n*g.world, n*g.rank
	// Token ids are exact in float32 (vocabularies < 2^24); the gathers
	// are sums of zero-padded buffers, in which each value meets only
	// zeros, so they are exact too.
	lens := make([]float32, size)
	for i, row := range tokens {
		lens[off+i] = float32(len(row))
	}
	g.allReduce(lens, "token lengths")
	width := 0
	for _, l := range lens {
		width = max(width, int(l))
	}
	ids := make([]float32, size*width)
	for i, row := range tokens {
		for j, id := range row {
			ids[(off+i)*width+j] = float32(id)
		}
	}
	g.allReduce(ids, "tokens")
	all := make([][]int32, size)
	for i := range all {
		all[i] = make([]int32, int(lens[i]))
		for j := range all[i] {
			all[i][j] = int32(ids[i*width+j])
		}
	}
	copy(all[off:], tokens) // this rank's rows exactly as given
	return all, off
}

// keys all-gathers the ranks' image keys (n rows on every rank; nil on a
// rank: zeros, unknown), rank by rank, as two 24-bit halves each, which
// float32 sums carry exactly. nil when no rank has any.
func (g *gatherGroup) keys(keys []uint64, n int) []uint64 {
	if g.world == 1 {
		return keys
	}
	local := make([]float32, 2*n)
	for i, k := range keys {
		local[2*i], local[2*i+1] = float32(k>>24), float32(k&(1<<24-1))
	}
	buf := g.rows(local, "all-gather of image keys")
	out := make([]uint64, len(buf)/2)
	any := false
	for i := range out {
		out[i] = uint64(buf[2*i])<<24 | uint64(buf[2*i+1])
		any = any || out[i] != 0
	}
	if !any {
		return nil
	}
	return out
}

// rows all-gathers x, this rank's rows of per values each (the same
// number on every rank), rank by rank: exact, as in tokens.
func (g *gatherGroup) rows(x []float32, what string) []float32 {
	if g.world == 1 {
		return x
	}
	buf := make([]float32, len(x)*g.world)
	copy(buf[len(x)*g.rank:], x)
	g.allReduce(buf, what)
	return buf
}

// contrastive is the BLIP-2 stage-1 model's GradCache first pass
// (models.ContrastFeatures, models.Contrast).
type contrastive interface {
	ContrastFeatures(b *models.Batch) (models.ContrastFeatures, error)
	Contrast(f models.ContrastFeatures) (*models.Contrast, error)
}

// contrast is GradCache's first pass over this rank's micro-batches: their
// features without a graph, all-gathered across the ranks (global batch
// order: rank by rank, micro-batches in order), ITC over the whole global
// batch and its gradient, the same on every rank. It returns each
// micro-batch's models.Group. A failed collective panics with
// collectiveFailure.
func (g *gatherGroup) contrast(m contrastive, batches []*models.Batch, seed uint64) ([]*models.Group, error) {
	var local models.ContrastFeatures
	var tokens [][]int32
	var keys []uint64
	anyKey := false
	for _, b := range batches {
		anyKey = anyKey || b.ImageKeys != nil
	}
	for k, b := range batches {
		f, err := m.ContrastFeatures(b)
		if err != nil {
			return nil, fmt.Errorf("micro-batch %d: contrast features: %w", k, err)
		}
		local.Image = append(local.Image, f.Image...)
		local.Text = append(local.Text, f.Text...)
		local.ViT = append(local.ViT, f.ViT...)
		tokens = append(tokens, b.Tokens...)
		if anyKey {
			bk := b.ImageKeys
			if bk == nil {
				bk = make([]uint64, len(b.Tokens))
			}
			keys = append(keys, bk...)
		}
	}
	all, off := g.tokens(tokens)
	allKeys := g.keys(keys, len(tokens))
	global := models.ContrastFeatures{
		Image:     g.rows(local.Image, "all-gather of image features"),
		Text:      g.rows(local.Text, "all-gather of text features"),
		ViT:       g.rows(local.ViT, "all-gather of ViT outputs"),
		Tokens:    all,
		ImageKeys: allKeys,
	}
	c, err := m.Contrast(global)
	if err != nil {
		return nil, err
	}
	groups := make([]*models.Group, len(batches))
	for k, b := range batches {
		groups[k] = &models.Group{Offset: off, Tokens: all, ImageKeys: allKeys, Seed: seed, Contrast: c}
		off += len(b.Tokens)
	}
	return groups, nil
}

// gather is the all-gather with gradient: forward, every rank's rows of x
// in rank order; backward, the sum over the ranks of the gradient of the
// gathered tensor, of which x takes its rows.
func (g *gatherGroup) gather(tp *kernels.Tape, x *kernels.Tensor, off, size int) *kernels.Tensor {
	n := x.Shape[0]
	per := x.Size() / n
	buf := make([]float32, size*per)
	copy(buf[off*per:], x.Data)
	g.allReduce(buf, fmt.Sprintf("all-gather of %v", x.Shape))
	out := kernels.New(buf, append([]int{size}, x.Shape[1:]...)...)
	out = tp.Custom("AllGather", out, func() {
		grad := append([]float32(nil), out.Grad...)
		g.allReduce(grad, fmt.Sprintf("all-gather backward of %v", x.Shape))
		xg := x.GradBuf()
		for i := range xg {
			xg[i] += grad[off*per+i]
		}
		if g.release != nil {
			g.release()
		}
	}, x)
	if out.RequiresGrad() && g.hold != nil {
		g.hold()
	}
	return out
}
