package shard

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
)

// Order is the global sample order of a dataset: a pure function of the
// shard row counts, the seed and the epoch. For each epoch it shuffles the
// shard order, lays the shards' rows end to end, and shuffles rows within
// consecutive windows of Window positions (the idea of MosaicML Streaming's
// py1e: a bounded window keeps reads local to a few shards, so a cache of
// about Window samples' batches serves a whole window). It never depends on
// the number of workers.
//
// An Order is safe for concurrent use; it caches the permutations of the
// last few windows it computed.
type Order struct {
	rows   []int64
	total  int64
	seed   uint64
	window int64

	mu     sync.Mutex
	epochs map[int64]*epochPlan // guarded by mu, at most 2 entries
	blocks map[[2]int64][]int32 // (epoch, block) -> permutation; guarded by mu
	bq     [][2]int64           // insertion order of blocks, for eviction
}

type epochPlan struct {
	perm []int   // position in epoch order -> shard
	ends []int64 // cumulative rows at the end of each permuted shard
}

// NewOrder returns the order of a dataset whose shards hold rows[i] rows.
// window <= 0 or larger than the dataset means one window over everything
// (a full shuffle).
func NewOrder(rows []int64, seed uint64, window int64) (*Order, error) {
	var total int64
	for i, r := range rows {
		if r <= 0 {
			return nil, fmt.Errorf("shard %d has %d rows", i, r)
		}
		total += r
	}
	if total == 0 {
		return nil, fmt.Errorf("empty dataset")
	}
	if window <= 0 || window > total {
		window = total
	}
	if window > 1<<31-1 {
		return nil, fmt.Errorf("shuffle window %d too large", window)
	}
	return &Order{rows: append([]int64(nil), rows...), total: total, seed: seed, window: window,
		epochs: map[int64]*epochPlan{}, blocks: map[[2]int64][]int32{}}, nil
}

// Len returns the number of samples in one epoch.
func (o *Order) Len() int64 { return o.total }

// Window returns the shuffle window.
func (o *Order) Window() int64 { return o.window }

// mix derives independent stream seeds from the order's seed.
func mix(a, b, c uint64) *rand.Rand {
	return rand.New(rand.NewPCG(a^0x6a09e667f3bcc909, b*0x9E3779B97F4A7C15+c*0xBF58476D1CE4E5B9+1))
}

func (o *Order) plan(epoch int64) *epochPlan {
	if p, ok := o.epochs[epoch]; ok {
		return p
	}
	p := &epochPlan{perm: mix(o.seed, uint64(epoch), 1).Perm(len(o.rows))}
	var acc int64
	for _, s := range p.perm {
		acc += o.rows[s]
		p.ends = append(p.ends, acc)
	}
	if len(o.epochs) >= 2 {
		clear(o.epochs)
	}
	o.epochs[epoch] = p
	return p
}

// blockPerm returns the permutation of window block b of epoch, of length n.
func (o *Order) blockPerm(epoch, b int64, n int) []int32 {
	k := [2]int64{epoch, b}
	if p, ok := o.blocks[k]; ok {
		return p
	}
	p := make([]int32, n)
	for i := range p {
		p[i] = int32(i)
	}
	r := mix(o.seed, uint64(epoch), uint64(b)+2)
	r.Shuffle(n, func(i, j int) { p[i], p[j] = p[j], p[i] })
	o.blocks[k] = p
	o.bq = append(o.bq, k)
	if len(o.bq) > 4 {
		delete(o.blocks, o.bq[0])
		o.bq = o.bq[1:]
	}
	return p
}

// At returns the sample at position pos (0 <= pos < Len) of epoch.
func (o *Order) At(epoch, pos int64) Loc {
	if pos < 0 || pos >= o.total {
		panic(fmt.Sprintf("shard.Order.At: position %d outside [0, %d)", pos, o.total))
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	b := pos / o.window
	start := b * o.window
	n := min(o.window, o.total-start)
	u := start + int64(o.blockPerm(epoch, b, int(n))[pos-start])
	p := o.plan(epoch)
	i := sort.Search(len(p.ends), func(i int) bool { return p.ends[i] > u })
	prev := int64(0)
	if i > 0 {
		prev = p.ends[i-1]
	}
	return Loc{Shard: p.perm[i], Row: u - prev}
}

// Global returns the sample at global position g of the endless stream of
// epochs 0, 1, 2, ...
func (o *Order) Global(g int64) Loc {
	return o.At(g/o.total, g%o.total)
}

// naiveEpoch materialises a whole epoch the slow, obvious way. It is the
// reference that tests compare At against.
func (o *Order) naiveEpoch(epoch int64) []Loc {
	perm := mix(o.seed, uint64(epoch), 1).Perm(len(o.rows))
	var flat []Loc
	for _, s := range perm {
		for r := int64(0); r < o.rows[s]; r++ {
			flat = append(flat, Loc{Shard: s, Row: r})
		}
	}
	out := make([]Loc, len(flat))
	for start := int64(0); start < o.total; start += o.window {
		n := min(o.window, o.total-start)
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		r := mix(o.seed, uint64(epoch), uint64(start/o.window)+2)
		r.Shuffle(int(n), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		for i := int64(0); i < n; i++ {
			out[start+i] = flat[start+int64(idx[i])]
		}
	}
	return out
}

// State is the resumable position of a data stream: O(1) in size. Consumed
// counts the samples of Epoch already handed out; it is all a checkpoint
// needs to record (with the seed) to resume at any world size.
type State struct {
	Seed     uint64 `json:"seed"`
	Epoch    int64  `json:"epoch"`
	Consumed int64  `json:"consumed"`
}

// Position returns the global sample position of the state for an epoch
// length n.
func (s State) Position(n int64) int64 { return s.Epoch*n + s.Consumed }

// Advance returns the state after k more samples, for an epoch length n.
func (s State) Advance(k, n int64) State {
	g := s.Position(n) + k
	s.Epoch, s.Consumed = g/n, g%n
	return s
}

// RankSlice returns which part of a global batch of size batch rank r of
// world takes: positions [start, start+n) of the batch. The first
// batch%world ranks take one sample more.
func RankSlice(batch, rank, world int) (start, n int) {
	base, rem := batch/world, batch%world
	n = base
	if rank < rem {
		n++
	}
	return rank*base + min(rank, rem), n
}

// Sampler hands out global batches of a fixed size from an Order. Global
// batch k is the samples at global positions [k*Batch, (k+1)*Batch) of the
// endless stream of epochs; rank r of W takes RankSlice(Batch, r, W) of it.
type Sampler struct {
	Order *Order
	Batch int
}

// RankBatch returns the locations rank takes from the global batch that
// starts at state st (st is not changed: advance it by Batch once every
// rank has consumed its slice).
func (s Sampler) RankBatch(st State, rank, world int) []Loc {
	start, n := RankSlice(s.Batch, rank, world)
	g := st.Position(s.Order.Len()) + int64(start)
	out := make([]Loc, n)
	for i := range out {
		out[i] = s.Order.Global(g + int64(i))
	}
	return out
}

// Next returns the state after one global batch.
func (s Sampler) Next(st State) State { return st.Advance(int64(s.Batch), s.Order.Len()) }
