package collective

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/loomtrain/loom/kernels"
)

// Layout says how a sequence of Total tokens is split over the ranks of a
// ring-attention ring.
type Layout uint8

// The layouts.
const (
	// Zigzag cuts the sequence into 2·World chunks; rank r holds chunks r and
	// 2·World−1−r, so that with a causal mask every rank does the same work
	// at every ring step (research/collectives.md §5). Total must be a
	// multiple of 2·World.
	Zigzag Layout = iota
	// Contiguous gives rank r the r-th of World equal blocks (the naive ring;
	// with a causal mask the last rank does ~2× the average work). Total
	// must be a multiple of World.
	Contiguous
)

func (l Layout) String() string {
	if l == Zigzag {
		return "zigzag"
	}
	return "contiguous"
}

// LocalRows is the number of sequence rows a rank holds.
func (l Layout) LocalRows(total, world int) int { return total / world }

func (l Layout) check(total, world int) error {
	div := world
	if l == Zigzag {
		div = 2 * world
	}
	if total <= 0 || total%div != 0 {
		return fmt.Errorf("collective: ring attention: %s layout: sequence length %d is not a positive multiple of %d", l, total, div)
	}
	return nil
}

// Positions returns the global position ids of rank's rows, in the order
// the rank holds them. Apply RoPE with these (not 0…n−1) so that rotary
// phases match the unsplit sequence.
func (l Layout) Positions(total, world, rank int) []int32 {
	if l.check(total, world) != nil {
		panic(l.check(total, world))
	}
	n := total / world
	pos := make([]int32, n)
	if l == Contiguous {
		for i := range pos {
			pos[i] = int32(rank*n + i)
		}
		return pos
	}
	c := n / 2
	for i := range c {
		pos[i] = int32(rank*c + i)
		pos[c+i] = int32((2*world-1-rank)*c + i)
	}
	return pos
}

// Shard copies rank's rows of a full sequence x ([total, width], row-major)
// into a new [total/world, width] slice in the layout's order. Data loaders
// and tests use it; Unshard is the inverse.
func (l Layout) Shard(x []float32, width, total, world, rank int) []float32 {
	pos := l.Positions(total, world, rank)
	out := make([]float32, len(pos)*width)
	for i, p := range pos {
		copy(out[i*width:(i+1)*width], x[int(p)*width:(int(p)+1)*width])
	}
	return out
}

// Unshard writes rank's rows (as Shard returned them) back into the full x.
func (l Layout) Unshard(x, local []float32, width, total, world, rank int) {
	for i, p := range l.Positions(total, world, rank) {
		copy(x[int(p)*width:(int(p)+1)*width], local[i*width:(i+1)*width])
	}
}

// RingAttnConfig describes one ring-attention call. Every rank passes the
// same values except Seg, which is the rank's own rows' segment ids.
type RingAttnConfig struct {
	Total   int     // global sequence length
	Heads   int     // attention heads (K and V have as many heads as Q)
	HeadDim int     // per-head dimension
	Scale   float32 // score scale; 0 means 1/√HeadDim
	Causal  bool    // causal mask by global position
	Layout  Layout
	// Seg, if not nil, holds the segment id of each local row (packed
	// sequences): rows of different segments never attend. The ids travel
	// with K and V around the ring.
	Seg []int32
	// Stats, if not nil, receives the time this rank spent in the attention
	// kernels and the number of score elements it computed.
	Stats *RingAttnStats
}

// RingAttnStats is filled in by RingAttentionForward/Backward.
type RingAttnStats struct {
	Compute time.Duration // wall time inside the block kernels
	Wall    time.Duration // wall time of the whole call
	Pairs   int64         // (query, key) pairs computed, summed over heads
}

func (cfg *RingAttnConfig) scale() float32 {
	if cfg.Scale != 0 {
		return cfg.Scale
	}
	return float32(1 / math.Sqrt(float64(cfg.HeadDim)))
}

// ringAttn holds one call's shapes and its rank's place in the ring.
type ringAttn struct {
	cfg     RingAttnConfig
	n, r    int // world, rank
	rows    int // local rows
	hd      int // heads·headDim
	pos     []int32
	kvLen   int // floats of one K (or V)
	segOff  int // offset of the segment ids in a kv buffer (= 2·kvLen)
	bufLen  int // floats of a kv message
	scale   float32
	withSeg bool
}

func (c *Comm) newRingAttn(cfg RingAttnConfig, rows int, bufs ...[]float32) (*ringAttn, error) {
	if err := cfg.Layout.check(cfg.Total, c.world); err != nil {
		return nil, err
	}
	if cfg.Heads < 1 || cfg.HeadDim < 1 {
		return nil, fmt.Errorf("collective: ring attention: %d heads of dimension %d", cfg.Heads, cfg.HeadDim)
	}
	a := &ringAttn{cfg: cfg, n: c.world, r: c.rank, rows: cfg.Total / c.world, hd: cfg.Heads * cfg.HeadDim, scale: cfg.scale()}
	if rows != a.rows {
		return nil, fmt.Errorf("collective: ring attention: rank %d holds %d rows, want %d (sequence %d over %d ranks)", c.rank, rows, a.rows, cfg.Total, c.world)
	}
	for i, b := range bufs {
		if len(b) != a.rows*a.hd {
			return nil, fmt.Errorf("collective: ring attention: tensor %d has %d elements, want %d rows × %d heads × %d", i, len(b), a.rows, cfg.Heads, cfg.HeadDim)
		}
	}
	if cfg.Seg != nil && len(cfg.Seg) != a.rows {
		return nil, fmt.Errorf("collective: ring attention: Seg has %d ids for %d rows", len(cfg.Seg), a.rows)
	}
	a.pos = cfg.Layout.Positions(cfg.Total, c.world, c.rank)
	a.kvLen = a.rows * a.hd
	a.segOff = 2 * a.kvLen
	a.withSeg = cfg.Seg != nil
	a.bufLen = 2 * a.kvLen
	if a.withSeg {
		a.bufLen += a.rows
	}
	return a, nil
}

// pack builds a kv message: K, V, then (with segments) the ids as float bits.
func (a *ringAttn) pack(k, v []float32) []float32 {
	buf := make([]float32, a.bufLen)
	copy(buf, k)
	copy(buf[a.kvLen:], v)
	if a.withSeg {
		for i, s := range a.cfg.Seg {
			buf[a.segOff+i] = math.Float32frombits(uint32(s))
		}
	}
	return buf
}

func (a *ringAttn) kseg(buf []float32) []int32 {
	if !a.withSeg {
		return nil
	}
	s := make([]int32, a.rows)
	for i := range s {
		s[i] = int32(math.Float32bits(buf[a.segOff+i]))
	}
	return s
}

// block is one kernel call of a ring step: query rows [q0, q0+nq) against
// key rows [k0, k0+nk) of the visiting block, with or without the causal
// mask.
type block struct {
	q0, nq, k0, nk int
	causal         bool
}

// Blocks is the pure per-step rule (research/collectives.md §5): which part
// of the local queries attends to which part of the block that arrives at
// step s (from rank (r−s) mod n). Zero blocks means the step is skipped.
func (a *ringAttn) blocks(s int) []block {
	return stepBlocks(a.cfg.Causal, a.cfg.Layout, a.n, a.r, s, a.rows)
}

func stepBlocks(causal bool, l Layout, n, r, s, rows int) []block {
	full := []block{{0, rows, 0, rows, false}}
	if !causal {
		return full
	}
	src := mod(r-s, n)
	half := rows / 2
	if s == 0 {
		if l == Zigzag {
			// The local block [chunk r; chunk 2n−1−r] against itself:
			// chunk r sees itself causally and nothing of chunk 2n−1−r;
			// chunk 2n−1−r sees all of chunk r and itself causally, so the
			// masked-out quarter is never computed.
			// (Cutting the causal quarters further does not pay: the kernel
			// already skips masked tiles of a block whose positions rise,
			// and more calls cost more than they save; measured with
			// loom bench ringattention.)
			return []block{{0, half, 0, half, true}, {half, half, 0, half, false}, {half, half, half, half, true}}
		}
		return []block{{0, rows, 0, rows, true}}
	}
	if l == Contiguous {
		if src < r {
			return full
		}
		return nil
	}
	if src < r {
		return []block{{0, rows, 0, half, false}} // all queries × the visitor's early chunk
	}
	return []block{{half, half, 0, rows, false}} // late queries × both visitor chunks
}

// Block is one kernel call of a ring-attention step: local query rows
// [Q0, Q0+NQ) against key rows [K0, K0+NK) of the visiting block, with the
// causal mask (by global position) or without.
type Block struct {
	Q0, NQ, K0, NK int
	Causal         bool
}

// StepBlocks is the per-step rule RingAttentionForward and Backward follow at
// ring step s on rank (the block visiting then comes from rank
// (rank−s) mod world), for benchmarks that time the compute alone.
func StepBlocks(causal bool, l Layout, total, world, rank, s int) []Block {
	var out []Block
	for _, b := range stepBlocks(causal, l, world, rank, s, total/world) {
		out = append(out, Block{b.q0, b.nq, b.k0, b.nk, b.causal})
	}
	return out
}

// StepWork is the number of (query, key) pairs per head a rank computes at
// ring step s, for the load-balance accounting of benchmarks and tests (a
// causal diagonal block counts as full: the kernel computes its tiles).
func StepWork(causal bool, l Layout, total, world, rank, s int) int {
	w := 0
	for _, b := range stepBlocks(causal, l, world, rank, s, total/world) {
		w += b.nq * b.nk
	}
	return w
}

func (a *ringAttn) mask(b block, qseg, kseg, kpos []int32) *kernels.AttnMask {
	if !b.causal && qseg == nil {
		return nil
	}
	m := &kernels.AttnMask{Causal: b.causal}
	if b.causal {
		m.QPos = a.pos[b.q0 : b.q0+b.nq]
		m.KPos = kpos[b.k0 : b.k0+b.nk]
	}
	if qseg != nil {
		m.QSeg = qseg[b.q0 : b.q0+b.nq]
		m.KSeg = kseg[b.k0 : b.k0+b.nk]
	}
	return m
}

// ringIO runs a call's transfers: one goroutine sends, one receives, each
// taking jobs in order, so that the order of messages on the (single)
// channel is the order in which the compute loop posts them, on every rank.
type ringIO struct {
	s          *opState
	next, prev int
	sendq      chan ioJob
	recvq      chan ioJob
	slice      int
}

type ioJob struct {
	buf  []float32
	step uint32
	done chan struct{} // closed on success
}

func (s *opState) newRingIO(depth int) *ringIO {
	c := s.c
	rio := &ringIO{s: s, next: (c.rank + 1) % c.world, prev: (c.rank + c.world - 1) % c.world,
		sendq: make(chan ioJob, depth), recvq: make(chan ioJob, depth), slice: c.slice}
	return rio
}

// run serves the queues until they are closed or the operation fails.
func (rio *ringIO) run() (wait func()) {
	done := make(chan struct{}, 2)
	serve := func(q chan ioJob, send bool) {
		defer func() { done <- struct{}{} }()
		for j := range q {
			if rio.s.ctx.Err() != nil {
				continue // drain
			}
			// Slice big blocks so that no message exceeds Config.SliceBytes.
			ok := true
			for i, sl := 0, uint32(0); i < len(j.buf); sl++ {
				end := min(len(j.buf), i+rio.slice)
				var err error
				if send {
					err = rio.s.send(rio.next, 0, j.step, sl, j.buf[i:end])
				} else {
					err = rio.s.recv(rio.prev, 0, j.step, sl, j.buf[i:end])
				}
				if err != nil {
					rio.s.fail(err)
					ok = false
					break
				}
				i = end
			}
			if ok {
				close(j.done)
			}
		}
	}
	go serve(rio.sendq, true)
	go serve(rio.recvq, false)
	return func() {
		close(rio.sendq)
		close(rio.recvq)
		<-done
		<-done
	}
}

func (rio *ringIO) post(q chan ioJob, buf []float32, step uint32) chan struct{} {
	j := ioJob{buf: buf, step: step, done: make(chan struct{})}
	q <- j
	return j.done
}

// await waits for a job or the operation's failure.
func (rio *ringIO) await(done chan struct{}) bool {
	select {
	case <-done:
		return true
	case <-rio.s.ctx.Done():
		return false
	}
}

// RingAttentionForward computes attention of this rank's queries over the
// whole sequence, whose keys and values are spread over the ring: K and V
// blocks rotate around the ring (each rank sends its current block to the
// next while it computes on it) and the partial results are merged with
// their log-sum-exp. q, k, v and o are [rows, Heads, HeadDim] with rows =
// Total/World in the layout's order; lse is [rows, Heads]. o and lse are
// overwritten; keep q, k, v, o and lse for RingAttentionBackward.
func (c *Comm) RingAttentionForward(ctx context.Context, cfg RingAttnConfig, q, k, v, o, lse []float32) error {
	rows := len(lse) / max(1, cfg.Heads)
	a, err := c.newRingAttn(cfg, rows, q, k, v, o)
	if err != nil {
		return err
	}
	t0 := time.Now()
	var stats RingAttnStats
	s, err := c.begin(ctx, OpRingAttnFwd)
	if err != nil {
		return err
	}
	h, d := cfg.Heads, cfg.HeadDim
	for i := range o {
		o[i] = 0
	}
	ninf := float32(math.Inf(-1))
	for i := range lse {
		lse[i] = ninf
	}
	cur := a.pack(k, v)
	nxt := make([]float32, a.bufLen)
	oBlk := make([]float32, len(o))
	lseBlk := make([]float32, len(lse))
	rio := s.newRingIO(4)
	stop := rio.run()
	for step := 0; step < a.n && s.ctx.Err() == nil; step++ {
		var sent, got chan struct{}
		if step < a.n-1 {
			sent = rio.post(rio.sendq, cur, uint32(step))
			got = rio.post(rio.recvq, nxt, uint32(step))
		}
		src := mod(a.r-step, a.n)
		kpos := cfg.Layout.Positions(cfg.Total, a.n, src)
		kseg := a.kseg(cur)
		tc := time.Now()
		for _, b := range a.blocks(step) {
			qo, ko := b.q0*a.hd, b.k0*a.hd
			kernels.AttnBlockForward(q[qo:qo+b.nq*a.hd], cur[ko:ko+b.nk*a.hd], cur[a.kvLen+ko:a.kvLen+ko+b.nk*a.hd],
				b.nq, b.nk, h, d, a.scale, a.mask(b, cfg.Seg, kseg, kpos), oBlk[:b.nq*a.hd], lseBlk[:b.nq*h])
			kernels.AttnMerge(o[qo:qo+b.nq*a.hd], lse[b.q0*h:(b.q0+b.nq)*h], oBlk[:b.nq*a.hd], lseBlk[:b.nq*h], b.nq, h, d)
			stats.Pairs += int64(b.nq) * int64(b.nk) * int64(h)
		}
		stats.Compute += time.Since(tc)
		if step < a.n-1 {
			if !rio.await(got) || !rio.await(sent) {
				break
			}
			cur, nxt = nxt, cur
		}
	}
	stop()
	if s.err == nil && ctx.Err() != nil {
		s.fail(s.opError(-1, "", ctx.Err()))
	}
	stats.Wall = time.Since(t0)
	if cfg.Stats != nil {
		*cfg.Stats = stats
	}
	return s.end()
}

// RingAttentionBackward computes this rank's dq, dk and dv from the saved
// forward tensors and the output gradient do (all [rows, Heads, HeadDim];
// lse [rows, Heads]). K and V rotate as in the forward; the dK, dV
// accumulators of each block travel one step behind them and come home
// after a full turn. dq, dk and dv are overwritten.
func (c *Comm) RingAttentionBackward(ctx context.Context, cfg RingAttnConfig, q, k, v, o, lse, do, dq, dk, dv []float32) error {
	rows := len(lse) / max(1, cfg.Heads)
	a, err := c.newRingAttn(cfg, rows, q, k, v, o, do, dq, dk, dv)
	if err != nil {
		return err
	}
	t0 := time.Now()
	var stats RingAttnStats
	s, err := c.begin(ctx, OpRingAttnBwd)
	if err != nil {
		return err
	}
	h, d := cfg.Heads, cfg.HeadDim
	delta := make([]float32, len(lse))
	kernels.AttnDelta(o, do, rows, h, d, delta)
	for i := range dq {
		dq[i] = 0
	}
	cur := a.pack(k, v)
	nxt := make([]float32, a.bufLen)
	// dkv buffers: [dK | dV]. dcur accumulates the visiting block's
	// gradient; dnxt receives the next one; dsending is still being sent.
	dcur := make([]float32, 2*a.kvLen)
	dnxt := make([]float32, 2*a.kvLen)
	rio := s.newRingIO(8)
	stop := rio.run()
	var dgot, dsent chan struct{}
	for step := 0; step < a.n && s.ctx.Err() == nil; step++ {
		var sent, got chan struct{}
		if step < a.n-1 {
			sent = rio.post(rio.sendq, cur, uint32(2*step))
			got = rio.post(rio.recvq, nxt, uint32(2*step))
		}
		if step > 0 {
			// The accumulator of the block that arrived is on its way from
			// the rank that used it at the previous step.
			if !rio.await(dgot) {
				break
			}
			dcur, dnxt = dnxt, dcur
		}
		src := mod(a.r-step, a.n)
		kpos := cfg.Layout.Positions(cfg.Total, a.n, src)
		kseg := a.kseg(cur)
		tc := time.Now()
		for _, b := range a.blocks(step) {
			qo, ko := b.q0*a.hd, b.k0*a.hd
			qs, qe, ks, ke := qo, qo+b.nq*a.hd, ko, ko+b.nk*a.hd
			kernels.AttnBlockBackward(q[qs:qe], cur[ks:ke], cur[a.kvLen+ks:a.kvLen+ke], do[qs:qe],
				lse[b.q0*h:(b.q0+b.nq)*h], delta[b.q0*h:(b.q0+b.nq)*h], b.nq, b.nk, h, d, a.scale,
				a.mask(b, cfg.Seg, kseg, kpos), dq[qs:qe], dcur[ks:ke], dcur[a.kvLen+ks:a.kvLen+ke])
			stats.Pairs += int64(b.nq) * int64(b.nk) * int64(h)
		}
		stats.Compute += time.Since(tc)
		if a.n == 1 {
			dnxt = dcur // nothing travels
			break
		}
		// Pass the accumulator on (after the last step it goes home), and
		// receive the next one into the buffer whose send has completed.
		if dsent != nil && !rio.await(dsent) {
			break
		}
		dsent = rio.post(rio.sendq, dcur, uint32(2*step+1))
		dgot = rio.post(rio.recvq, dnxt, uint32(2*step+1))
		if step < a.n-1 {
			if !rio.await(got) || !rio.await(sent) {
				break
			}
			cur, nxt = nxt, cur
		}
	}
	if a.n == 1 {
		copy(dk, dnxt[:a.kvLen])
		copy(dv, dnxt[a.kvLen:])
	} else if s.ctx.Err() == nil && rio.await(dgot) && rio.await(dsent) {
		copy(dk, dnxt[:a.kvLen])
		copy(dv, dnxt[a.kvLen:])
	}
	stop()
	if s.err == nil && ctx.Err() != nil {
		s.fail(s.opError(-1, "", ctx.Err()))
	}
	stats.Wall = time.Since(t0)
	if cfg.Stats != nil {
		*cfg.Stats = stats
	}
	return s.end()
}
