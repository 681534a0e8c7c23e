package trainer

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/kernels"
)

// zero shards the training state across the data-parallel ranks, as
// DeepSpeed's ZeRO stages 1 and 2 do (manifest parallelism.shard,
// docs/parallelism.md).
//
// The shards follow the gradient all-reduce's flat buffer (gradReduce):
// in every bucket a rank owns the range ChunkRange(len(bucket), world,
// rank), the chunk a ring reduce-scatter of that bucket leaves reduced on
// it. Where an owned range crosses parameters it is cut into pieces, one
// per parameter, and AdamW runs over views of those pieces alone, so that
// its two moments exist only for the rank's 1/world of the trainable
// elements. After the update the ranks all-gather the parameters, bucket
// by bucket, through the same flat buffer (the gradients in it are spent
// by then), and every rank ends the step with the same weights.
//
// Level 1 ("optimizer") keeps the all-reduce: every rank has every reduced
// gradient, clipping is plain data parallelism's, and the weights are
// bit-identical to it (AdamW is element-wise and its vector and scalar
// paths agree bit for bit). Level 2 ("gradients") reduce-scatters the
// buckets instead and drops each parameter's full gradient as soon as it
// is copied into the flat buffer; the optimizer reads its pieces' reduced
// gradients from there, and the clipping norm is the sum of the ranks'
// partial squared norms (one more all-reduce of one float32), so it can
// differ from plain data parallelism's in the last bits. The bucket that
// holds the presence flags and the loss is all-reduced at both levels.
//
// Checkpoints keep their format: at a checkpoint the ranks all-gather the
// moments and rank 0 writes them whole, so that any world size, sharded
// or not, can resume from them (each rank then keeps its own pieces).
type zero struct {
	level  int // 1 or 2: api.ShardLevels
	comm   *collective.Comm
	g      *gradReduce
	params []*kernels.Tensor
	pieces []piece
	views  []*kernels.Tensor // views[j] is pieces[j]'s slice of its parameter
	byParm [][]int           // per parameter: its pieces
}

// piece is params[param].Data[lo:hi], which lies at flat[flat:] in the
// gradient buffer.
type piece struct {
	param, lo, hi, flat int
}

// newZero shards params (those of g) at level 1 or 2 and sets g up for it.
func newZero(level int, c *collective.Comm, g *gradReduce, params []*kernels.Tensor) *zero {
	z := &zero{level: level, comm: c, g: g, params: params, byParm: make([][]int, len(params))}
	// Parameters in the order of their offsets in flat (the reverse of
	// params: gradReduce puts the last layers first).
	order := make([]int, len(params))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return g.offs[a] - g.offs[b] })
	for k := 0; k+1 < len(g.bounds); k++ {
		lo, hi := g.bounds[k], g.bounds[k+1]
		if level >= 2 && hi <= g.tail {
			g.bucketer.ReduceScatter(k)
		}
		c := collective.ChunkRange(hi-lo, c.World(), c.Rank())
		a, b := lo+c.Off, min(lo+c.Off+c.Len, g.tail)
		for _, i := range order {
			off, n := g.offs[i], len(params[i].Data)
			if s, e := max(a, off), min(b, off+n); s < e {
				z.byParm[i] = append(z.byParm[i], len(z.pieces))
				z.pieces = append(z.pieces, piece{param: i, lo: s - off, hi: e - off, flat: s})
			}
		}
	}
	for _, pc := range z.pieces {
		p := params[pc.param]
		v := kernels.New(p.Data[pc.lo:pc.hi], pc.hi-pc.lo).SetRequiresGrad(true)
		v.Name = fmt.Sprintf("%s[%d:%d]", p.Name, pc.lo, pc.hi)
		z.views = append(z.views, v)
	}
	g.scattered = level >= 2
	return z
}

// optimizer is AdamW with cfg over the rank's pieces; each piece decays
// as decay says of its parameter.
func (z *zero) optimizer(cfg kernels.AdamWConfig, decay func(*kernels.Tensor) bool) *kernels.AdamW {
	parent := make(map[*kernels.Tensor]*kernels.Tensor, len(z.views))
	for j, v := range z.views {
		parent[v] = z.params[z.pieces[j].param]
	}
	cfg.Decay = func(v *kernels.Tensor) bool { return decay(parent[v]) }
	return kernels.NewAdamW(z.views, cfg)
}

// owned is the number of trainable elements whose optimizer state this
// rank holds.
func (z *zero) owned() int {
	n := 0
	for _, pc := range z.pieces {
		n += pc.hi - pc.lo
	}
	return n
}

// bind points the pieces' gradients at this step's reduced gradients
// (after gradReduce.finish): the parameters' own at level 1, the flat
// buffer's at level 2; nil for a parameter no rank produced one for.
func (z *zero) bind() {
	for j, pc := range z.pieces {
		v := z.views[j]
		switch {
		case z.level < 2 && z.params[pc.param].Grad != nil:
			v.Grad = z.params[pc.param].Grad[pc.lo:pc.hi]
		case z.level >= 2 && z.g.present[pc.param]:
			v.Grad = z.g.flat[pc.flat : pc.flat+pc.hi-pc.lo]
		default:
			v.Grad = nil
		}
	}
}

// clip returns the global gradient norm at level 2, from the ranks'
// squared norms of their pieces, and scales the pieces' gradients as
// kernels.ClipGradNorm would when maxNorm > 0 and the norm exceeds it.
func (z *zero) clip(ctx context.Context, maxNorm float64) (float64, error) {
	var s float64
	for _, v := range z.views {
		for _, x := range v.Grad {
			s += float64(x) * float64(x)
		}
	}
	buf := []float32{float32(s)}
	if err := z.comm.AllReduce(ctx, buf, collective.Sum); err != nil {
		return 0, fmt.Errorf("gradient norm: %w", err)
	}
	norm := math.Sqrt(float64(buf[0]))
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		for j, v := range z.views {
			for k, x := range v.Grad {
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					pc := z.pieces[j]
					return norm, fmt.Errorf("gradient of %s[%d] is %v", z.params[pc.param].Name, pc.lo+k, x)
				}
			}
		}
		return norm, fmt.Errorf("gradient norm is %v (from another rank's shard, or it overflows)", norm)
	}
	if maxNorm <= 0 {
		return norm, nil
	}
	if coef := maxNorm / (norm + 1e-6); coef < 1 {
		for _, v := range z.views {
			for k := range v.Grad {
				v.Grad[k] = float32(float64(v.Grad[k]) * coef)
			}
		}
	}
	return norm, nil
}

// gatherParams ends a step: every rank all-gathers the parameters its
// peers updated, so that all hold the same weights again. The pieces'
// gradient views are dropped first (at level 2 they point into the flat
// buffer, which the gather overwrites).
func (z *zero) gatherParams(ctx context.Context) error {
	for _, v := range z.views {
		v.Grad = nil
	}
	fill := func(j int) []float32 { pc := z.pieces[j]; return z.params[pc.param].Data[pc.lo:pc.hi] }
	if err := z.gather(ctx, fill); err != nil {
		return fmt.Errorf("parameter all-gather: %w", err)
	}
	for i, p := range z.params {
		copy(p.Data, z.g.flat[z.g.offs[i]:z.g.offs[i]+len(p.Data)])
	}
	return nil
}

// gather writes fill(j) into piece j's place in the flat buffer on every
// rank and all-gathers the buckets: each then holds every rank's pieces.
func (z *zero) gather(ctx context.Context, fill func(j int) []float32) error {
	for j, pc := range z.pieces {
		copy(z.g.flat[pc.flat:pc.flat+pc.hi-pc.lo], fill(j))
	}
	for k := 0; k+1 < len(z.g.bounds); k++ {
		if err := z.comm.AllGather(ctx, z.g.flat[z.g.bounds[k]:z.g.bounds[k+1]]); err != nil {
			return fmt.Errorf("bucket %d of %d: %w", k, len(z.g.bounds)-1, err)
		}
	}
	return nil
}

// gatherMoments all-gathers AdamW's moments (opt over the pieces) into
// whole per-parameter buffers, for a checkpoint; every rank must call it.
// Only where keep is set (rank 0, which writes the checkpoint) are the
// buffers returned.
func (z *zero) gatherMoments(ctx context.Context, opt *kernels.AdamW, keep bool) (m, v [][]float32, err error) {
	for _, out := range []*[][]float32{&m, &v} {
		second := out == &v
		err := z.gather(ctx, func(j int) []float32 {
			mj, vj := opt.Moments(j)
			if second {
				return vj
			}
			return mj
		})
		if err != nil {
			return nil, nil, fmt.Errorf("optimizer state all-gather: %w", err)
		}
		if keep {
			for i, p := range z.params {
				*out = append(*out, slices.Clone(z.g.flat[z.g.offs[i]:z.g.offs[i]+len(p.Data)]))
			}
		}
	}
	return m, v, nil
}

// loadMoments copies parameter i's whole moments (from a checkpoint) into
// this rank's pieces of it.
func (z *zero) loadMoments(opt *kernels.AdamW, i int, m, v []float32) {
	for _, j := range z.byParm[i] {
		pc := z.pieces[j]
		mj, vj := opt.Moments(j)
		copy(mj, m[pc.lo:pc.hi])
		copy(vj, v[pc.lo:pc.hi])
	}
}
