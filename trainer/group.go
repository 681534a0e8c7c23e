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
// batch, across the workers (LAVIS concat_all_gather). Rank r's k-th
// micro-batch and the other ranks' k-th micro-batches form one
// models.Group: without gradient accumulation (micro_batch unset, the
// default) that is the whole global batch in global order, so the
// negatives, and the weights, are those one worker computes; with
// accumulation it is the k-th micro-batch of every rank, as in PyTorch DDP.
// The global batch must divide by the world size, so that every rank has
// micro-batches of the same sizes.

// collectiveFailure carries a failed collective out of a model's forward
// or backward pass (models.Group.Gather may panic; Step recovers it).
type collectiveFailure struct{ err error }

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

// group builds the models.Group of a micro-batch of n rows holding tokens:
// the rows of every rank's micro-batch, rank by rank.
func (g *gatherGroup) group(tokens [][]int32, seed uint64) *models.Group {
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
	return &models.Group{Offset: off, Tokens: all, Seed: seed, Gather: func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		return g.gather(tp, x, off, size)
	}}
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
