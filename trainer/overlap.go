package trainer

import (
	"context"

	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/kernels"
)

// gradReduce is the data-parallel gradient all-reduce of one step,
// overlapped with the last micro-batch's backward pass.
//
// The flat buffer holds the trainable parameters' gradients in reverse tree
// order (the last layers first: the order a backward pass finishes them),
// then one presence flag per parameter, then the weighted loss; it is cut
// into buckets of bucketFloats, which the collective.Bucketer reduces in
// index order. During the last micro-batch's backward,
// kernels.Tape.BackwardWithHook reports each parameter whose gradient is
// final; its gradient is copied into the flat buffer at once, and a bucket
// is handed to the Bucketer as soon as every parameter it holds is final,
// so that the first buckets travel while backward computes the rest. The
// bucket holding the flags and the loss goes last, in finish.
//
// The values reduced are the same whether a parameter was reported early
// or written in finish, so the result does not depend on the overlap.
type gradReduce struct {
	params   []*kernels.Tensor
	index    map[*kernels.Tensor]int
	offs     []int // offset of params[i]'s gradient in flat
	flat     []float32
	tail     int   // offset of the presence flags (the loss follows them)
	bounds   []int // bucket k is flat[bounds[k]:bounds[k+1]]
	bucketer *collective.Bucketer

	// scattered: ZeRO stage 2 (zero.go). The gradient buckets are
	// reduce-scattered, a parameter's gradient is dropped once copied into
	// flat, and finish leaves the sums there instead of copying them back.
	scattered bool
	// present[i]: params[i] has a gradient; after finish, on some rank.
	present []bool

	// hold > 0 defers handing complete buckets to the Bucketer (queued,
	// in order): a model op whose backward runs its own collective on the
	// same communicator (BLIP-2's all-gather) holds the buckets from its
	// forward until its backward collective is done, so that every rank
	// issues its collectives in the same order. Not reset by begin.
	hold   int
	queued []int

	// Per step.
	ctx     context.Context
	cancel  context.CancelFunc
	pending []int  // per bucket: parameters (and the tail) not yet written
	written []bool // per parameter
	started bool
}

// newGradReduce cuts the flat buffer into buckets of bucket floats.
func newGradReduce(c *collective.Comm, params []*kernels.Tensor, bucket int) *gradReduce {
	g := &gradReduce{params: params, index: make(map[*kernels.Tensor]int, len(params)), offs: make([]int, len(params))}
	off := 0
	for i := len(params) - 1; i >= 0; i-- {
		g.offs[i] = off
		g.index[params[i]] = i
		off += len(params[i].Data)
	}
	g.tail = off
	g.flat = make([]float32, off+len(params)+1)
	bs := buckets(g.flat, bucket)
	g.bounds = []int{0}
	for _, b := range bs {
		g.bounds = append(g.bounds, g.bounds[len(g.bounds)-1]+len(b))
	}
	g.bucketer = collective.NewBucketerBuffers(c, collective.Sum, bs...)
	g.pending = make([]int, len(bs))
	g.written = make([]bool, len(params))
	g.present = make([]bool, len(params))
	return g
}

// begin starts a step: from now on ready may hand buckets to the Bucketer,
// under ctx.
func (g *gradReduce) begin(ctx context.Context) {
	if g.started {
		return
	}
	g.started = true
	g.ctx, g.cancel = context.WithCancel(ctx)
	clear(g.pending)
	clear(g.written)
	for i, p := range g.params {
		g.each(g.offs[i], len(p.Data), func(k int) { g.pending[k]++ })
	}
	g.each(g.tail, len(g.flat)-g.tail, func(k int) { g.pending[k]++ })
}

// each calls f for every bucket that overlaps flat[off:off+n].
func (g *gradReduce) each(off, n int, f func(k int)) {
	if n == 0 {
		return
	}
	for k := 0; k+1 < len(g.bounds); k++ {
		if g.bounds[k] < off+n && off < g.bounds[k+1] {
			f(k)
		}
	}
}

// release counts flat[off:off+n] as written and hands every bucket that is
// now complete to the Bucketer.
func (g *gradReduce) release(off, n int) {
	g.each(off, n, func(k int) {
		if g.pending[k]--; g.pending[k] == 0 {
			if g.hold > 0 {
				g.queued = append(g.queued, k)
			} else {
				g.bucketer.Ready(g.ctx, k)
			}
		}
	})
}

// holdBuckets defers handing buckets to the Bucketer until the matching
// releaseBuckets (or finish).
func (g *gradReduce) holdBuckets() { g.hold++ }

// releaseBuckets ends one holdBuckets; the last one hands the queued
// buckets over, in order.
func (g *gradReduce) releaseBuckets() {
	if g.hold == 0 {
		return
	}
	if g.hold--; g.hold == 0 {
		g.flush()
	}
}

func (g *gradReduce) flush() {
	for _, k := range g.queued {
		g.bucketer.Ready(g.ctx, k)
	}
	g.queued = g.queued[:0]
}

// ready is the BackwardWithHook callback: p's gradient is final. Tensors
// that are not trainable parameters are ignored.
func (g *gradReduce) ready(p *kernels.Tensor) {
	i, ok := g.index[p]
	if !ok || !g.started || g.written[i] {
		return
	}
	g.write(i)
}

func (g *gradReduce) write(i int) {
	p, off := g.params[i], g.offs[i]
	if p.Grad == nil {
		clear(g.flat[off : off+len(p.Data)])
	} else {
		copy(g.flat[off:off+len(p.Data)], p.Grad)
	}
	g.present[i] = p.Grad != nil
	if g.scattered {
		p.Grad = nil // no backward rule touches it again (BackwardWithHook)
	}
	g.written[i] = true
	g.release(off, len(p.Data))
}

// finish writes the gradients not reported yet, the presence flags and the
// loss, waits for every bucket and copies the sums back: a parameter no
// rank produced a gradient for keeps Grad nil. When scattered, every Grad
// ends nil and the sums stay in flat (each rank's chunks of it).
func (g *gradReduce) finish(ctx context.Context, loss *float64) error {
	g.begin(ctx)
	for i := range g.params {
		if !g.written[i] {
			g.write(i)
		}
	}
	for i := range g.params {
		g.flat[g.tail+i] = 0
		if g.present[i] {
			g.flat[g.tail+i] = 1
		}
	}
	g.flat[len(g.flat)-1] = float32(*loss)
	g.hold = 0 // a held op whose backward never ran (no gradient reached it on any rank)
	g.flush()
	g.release(g.tail, len(g.flat)-g.tail)
	err := g.bucketer.Wait()
	g.cancel()
	g.started = false
	if err != nil {
		return err
	}
	for i, p := range g.params {
		g.present[i] = g.flat[g.tail+i] != 0
		if !g.present[i] || g.scattered {
			p.Grad = nil
			continue
		}
		if p.Grad == nil {
			p.Grad = make([]float32, len(p.Data))
		}
		copy(p.Grad, g.flat[g.offs[i]:g.offs[i]+len(p.Data)])
	}
	*loss = float64(g.flat[len(g.flat)-1])
	return nil
}

// abort ends a step that failed after begin: the reductions in flight are
// cancelled (the communicator aborts, as after any failed collective) and
// the Bucketer is reset.
func (g *gradReduce) abort() {
	g.hold, g.queued = 0, g.queued[:0]
	if !g.started {
		return
	}
	g.cancel()
	_ = g.bucketer.Wait()
	g.started = false
}
