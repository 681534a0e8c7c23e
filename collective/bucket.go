package collective

import (
	"context"
	"fmt"
)

// Bucketer overlaps the gradient all-reduce with the backward pass, like
// PyTorch DDP's buckets and Horovod's tensor fusion: gradients are packed
// into a few flat buckets, and each bucket is all-reduced as soon as the
// backward pass has filled it, while the backward pass goes on filling the
// next.
//
// Buckets are reduced strictly in index order (bucket 0 first), on every
// rank, whatever order Ready is called in; so number them in the order the
// backward pass completes them (the last layers' gradients first). Bucket i
// starts once it and all buckets before it are ready.
//
// One step:
//
//	for i := range layersInBackwardOrder { // backward
//		... write gradients into b.Bucket(k) ...
//		b.Ready(ctx, k) // when bucket k is complete
//	}
//	err := b.Wait() // all buckets reduced; b is ready for the next step
//
// A Bucketer is used by one goroutine (the trainer's); its reductions run on
// one more goroutine, which exists only between the first Ready of a step
// and Wait.
type Bucketer struct {
	c       *Comm
	op      ReduceOp
	buckets [][]float32
	scatter []bool // per bucket: reduce-scatter instead of all-reduce

	// Per step; reset by Wait.
	ready   []chan struct{}
	marked  []bool
	done    chan struct{}
	err     error // written by the worker before done is closed
	running bool
}

// NewBucketer allocates one flat buffer per size (in float32 elements) and
// returns a Bucketer that all-reduces them with op.
func NewBucketer(c *Comm, op ReduceOp, sizes ...int) *Bucketer {
	bufs := make([][]float32, len(sizes))
	for i, n := range sizes {
		bufs[i] = make([]float32, n)
	}
	return NewBucketerBuffers(c, op, bufs...)
}

// NewBucketerBuffers is NewBucketer over caller-owned buffers (for example
// views into one flat gradient array).
func NewBucketerBuffers(c *Comm, op ReduceOp, buckets ...[]float32) *Bucketer {
	b := &Bucketer{c: c, op: op, buckets: buckets}
	b.reset()
	return b
}

// ReduceScatter makes bucket i reduce-scatter instead of all-reduce (as
// ZeRO stage 2 reduces gradients): after Wait only the range
// ChunkRange(len(Bucket(i)), World(), Rank()) of it holds the reduction,
// the rest partial sums. Set it before the step's first Ready.
func (b *Bucketer) ReduceScatter(i int) {
	if b.scatter == nil {
		b.scatter = make([]bool, len(b.buckets))
	}
	b.scatter[i] = true
}

func (b *Bucketer) reset() {
	b.ready = make([]chan struct{}, len(b.buckets))
	for i := range b.ready {
		b.ready[i] = make(chan struct{})
	}
	b.marked = make([]bool, len(b.buckets))
	b.done = make(chan struct{})
	b.err = nil
	b.running = false
}

// Len is the number of buckets.
func (b *Bucketer) Len() int { return len(b.buckets) }

// Bucket is bucket i's buffer. Between Ready(i) and Wait the Bucketer owns it:
// do not touch it.
func (b *Bucketer) Bucket(i int) []float32 { return b.buckets[i] }

// Ready marks bucket i as filled for this step. The first Ready of a step
// starts the reductions, which run under ctx (cancel it to give up the step;
// Wait then returns the error). Marking a bucket twice in one step panics.
func (b *Bucketer) Ready(ctx context.Context, i int) {
	if b.marked[i] {
		panic(fmt.Sprintf("collective: Bucketer.Ready(%d) called twice in one step", i))
	}
	b.marked[i] = true
	if !b.running {
		b.running = true
		go b.run(ctx, b.ready, b.done)
	}
	close(b.ready[i])
}

func (b *Bucketer) run(ctx context.Context, ready []chan struct{}, done chan struct{}) {
	defer close(done)
	for i, r := range ready {
		select {
		case <-r:
		case <-ctx.Done():
			b.err = fmt.Errorf("collective: bucketed all-reduce: waiting for bucket %d of %d: %w", i, len(ready), ctx.Err())
			return
		}
		reduce, what := b.c.AllReduce, "all-reduce"
		if b.scatter != nil && b.scatter[i] {
			reduce, what = b.c.ReduceScatter, "reduce-scatter"
		}
		if err := reduce(ctx, b.buckets[i], b.op); err != nil {
			b.err = fmt.Errorf("collective: bucketed %s: bucket %d of %d (%d elements): %w", what, i, len(ready), len(b.buckets[i]), err)
			return
		}
	}
}

// Wait blocks until every bucket of this step has been all-reduced (or the
// first failure) and resets the Bucketer for the next step. If no bucket
// was marked this step it returns nil at once. A bucket that is never
// marked makes Wait block until the ctx given to Ready ends.
func (b *Bucketer) Wait() error {
	if !b.running {
		return nil
	}
	<-b.done
	err := b.err
	b.reset()
	return err
}
