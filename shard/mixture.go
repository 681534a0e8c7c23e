package shard

import (
	"fmt"
	"math"
	"sort"
	"sync"
)

// Mixture interleaves several sources (datasets) with fixed weights, as a
// pure function of the seed and the global position: every period of Period
// positions contains each source in proportion to its weight (largest
// remainder rounding), in an order shuffled per period. Because the count of
// each source before any position has a closed form, the position in each
// source's own stream is known without replaying history, and resuming
// needs only the global position.
type Mixture struct {
	weights []float64
	counts  []int // per period
	period  int
	seed    uint64

	mu    sync.Mutex
	cache map[int64]*mixCycle // guarded by mu, at most 2 entries
}

type mixCycle struct {
	src  []int16 // source at each position of the cycle
	rank []int32 // occurrence number of src[j] among src[:j]
}

// NewMixture returns a mixture of len(weights) sources. period <= 0 means
// 10000 (weights resolved to 0.01%).
func NewMixture(weights []float64, seed uint64, period int) (*Mixture, error) {
	if len(weights) == 0 || len(weights) > math.MaxInt16 {
		return nil, fmt.Errorf("mixture: %d sources", len(weights))
	}
	if period <= 0 {
		period = 10000
	}
	var sum float64
	for i, w := range weights {
		if !(w > 0) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("mixture: weight %d is %v, want > 0", i, w)
		}
		sum += w
	}
	counts := make([]int, len(weights))
	type rem struct {
		i int
		r float64
	}
	var rems []rem
	left := period
	for i, w := range weights {
		q := w / sum * float64(period)
		counts[i] = int(q)
		left -= counts[i]
		rems = append(rems, rem{i, q - float64(counts[i])})
	}
	sort.SliceStable(rems, func(a, b int) bool { return rems[a].r > rems[b].r })
	for k := 0; k < left; k++ {
		counts[rems[k].i]++
	}
	for i, c := range counts {
		if c == 0 {
			return nil, fmt.Errorf("mixture: weight %d (%v) rounds to 0 in a period of %d; raise the period", i, weights[i], period)
		}
	}
	return &Mixture{weights: append([]float64(nil), weights...), counts: counts, period: period, seed: seed, cache: map[int64]*mixCycle{}}, nil
}

// Counts returns how many positions of each period go to each source.
func (m *Mixture) Counts() []int { return append([]int(nil), m.counts...) }

func (m *Mixture) cycle(c int64) *mixCycle {
	if cy, ok := m.cache[c]; ok {
		return cy
	}
	src := make([]int16, 0, m.period)
	for i, n := range m.counts {
		for k := 0; k < n; k++ {
			src = append(src, int16(i))
		}
	}
	r := mix(m.seed, uint64(c), 0x5eed)
	r.Shuffle(len(src), func(i, j int) { src[i], src[j] = src[j], src[i] })
	rank := make([]int32, len(src))
	seen := make([]int32, len(m.counts))
	for j, s := range src {
		rank[j] = seen[s]
		seen[s]++
	}
	if len(m.cache) >= 2 {
		clear(m.cache)
	}
	cy := &mixCycle{src: src, rank: rank}
	m.cache[c] = cy
	return cy
}

// At returns which source global position g draws from, and the position
// in that source's own stream (how many samples that source gave before g).
func (m *Mixture) At(g int64) (source int, k int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, j := g/int64(m.period), g%int64(m.period)
	cy := m.cycle(c)
	s := int(cy.src[j])
	return s, c*int64(m.counts[s]) + int64(cy.rank[j])
}

// naiveAt replays the mixture from position 0: the reference for At.
func (m *Mixture) naiveAt(g int64) (int, int64) {
	seen := make([]int64, len(m.counts))
	for p := int64(0); ; p++ {
		m.mu.Lock()
		s := int(m.cycle(p / int64(m.period)).src[p%int64(m.period)])
		m.mu.Unlock()
		if p == g {
			return s, seen[s]
		}
		seen[s]++
	}
}

// MixLoc is one sample of a mixture: the source and the location in it.
type MixLoc struct {
	Source int
	Loc
}

// MixedSampler draws global batches from a mixture of datasets, each with
// its own Order (make the orders' seeds differ, e.g. seed+i). Position g of
// the mixture maps to position k of source s's endless stream.
type MixedSampler struct {
	Mix    *Mixture
	Orders []*Order
	Batch  int
}

// Global returns the sample at global position g.
func (s MixedSampler) Global(g int64) MixLoc {
	src, k := s.Mix.At(g)
	return MixLoc{Source: src, Loc: s.Orders[src].Global(k)}
}

// RankBatch returns rank's slice of the global batch starting at global
// position pos (pos = batches done * Batch).
func (s MixedSampler) RankBatch(pos int64, rank, world int) []MixLoc {
	start, n := RankSlice(s.Batch, rank, world)
	out := make([]MixLoc, n)
	for i := range out {
		out[i] = s.Global(pos + int64(start+i))
	}
	return out
}
