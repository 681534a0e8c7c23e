package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

type attnCase struct {
	name      string
	nq, nk, h int
	d         int
	mask      func(nq, nk int) *AttnMask
}

func posRange(lo, n int) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = int32(lo + i)
	}
	return p
}

func attnCases() []attnCase {
	return []attnCase{
		{"full", 70, 130, 2, 8, func(nq, nk int) *AttnMask { return nil }},
		{"causal", 150, 150, 2, 16, func(nq, nk int) *AttnMask {
			return &AttnMask{Causal: true, QPos: posRange(0, nq), KPos: posRange(0, nk)}
		}},
		{"causal-offset", 65, 200, 1, 8, func(nq, nk int) *AttnMask { // a ring rank's later query block
			return &AttnMask{Causal: true, QPos: posRange(100, nq), KPos: posRange(0, nk)}
		}},
		{"segments", 140, 140, 2, 8, func(nq, nk int) *AttnMask {
			packed := func(n, per int) (pos, seg []int32) {
				for i := 0; i < n; i++ {
					pos = append(pos, int32(i%per)) // positions restart at 0
					seg = append(seg, int32(i/per)) // packed sequences of per tokens
				}
				return pos, seg
			}
			per := max(2, nq/3)
			qp, qs := packed(nq, per)
			kp, ks := packed(nk, per)
			return &AttnMask{Causal: true, QPos: qp, KPos: kp, QSeg: qs, KSeg: ks}
		}},
		{"prefix", 100, 100, 2, 8, func(nq, nk int) *AttnMask {
			return &AttnMask{Causal: true, QPos: posRange(0, nq), KPos: posRange(0, nk), Prefix: 32}
		}},
		{"padding", 50, 90, 1, 8, func(nq, nk int) *AttnMask {
			ks := make([]int32, nk)
			for j := 70; j < nk; j++ {
				ks[j] = -1 // padded keys
			}
			return &AttnMask{KSeg: ks}
		}},
		{"d64-causal", 200, 400, 2, 64, func(nq, nk int) *AttnMask { // full and partial micro-kernel tiles
			return &AttnMask{Causal: true, QPos: posRange(300, nq), KPos: posRange(0, nk)}
		}},
		{"d64-full", 97, 385, 1, 64, func(nq, nk int) *AttnMask { return nil }},
		{"d64-causal-256", 256, 256, 2, 64, func(nq, nk int) *AttnMask { // short query and key tiles (64) on the micro-kernels
			return &AttnMask{Causal: true, QPos: posRange(0, nq), KPos: posRange(0, nk)}
		}},
		{"d64-full-320", 70, 320, 2, 64, func(nq, nk int) *AttnMask { return nil }}, // 70 rows (66 + 4 padded), keys 192 + 128
		{"d128-causal", 100, 200, 2, 128, func(nq, nk int) *AttnMask {
			return &AttnMask{Causal: true, QPos: posRange(100, nq), KPos: posRange(0, nk)}
		}},
		{"empty-rows", 40, 40, 1, 4, func(nq, nk int) *AttnMask { // queries 0..9 see nothing
			return &AttnMask{Causal: true, QPos: posRange(0, nq), KPos: posRange(10, nk)}
		}},
	}
}

func randSlice(rng *rand.Rand, n int) ([]float32, []float64) {
	a, b := make([]float32, n), make([]float64, n)
	for i := range a {
		a[i] = float32(rng.NormFloat64())
		b[i] = float64(a[i])
	}
	return a, b
}

func maxRelErr(got []float32, want []float64) (float64, int) {
	worst, at := 0.0, -1
	for i := range want {
		e := math.Abs(float64(got[i])-want[i]) / (1 + math.Abs(want[i]))
		if math.IsInf(want[i], -1) && math.IsInf(float64(got[i]), -1) {
			e = 0
		}
		if e > worst || math.IsNaN(e) {
			worst, at = e, i
		}
	}
	return worst, at
}

// TestAttnBlockVsDense runs the ring-attention composition in one process:
// the keys are cut into blocks, each block's partial is merged with
// AttnMerge, the backward is accumulated block by block with the final lse,
// and everything must match dense float64 attention.
func TestAttnBlockVsDense(t *testing.T) {
	defer func(br, bc, sk int) { attnBr, attnBc, attnShortKeys = br, bc, sk }(attnBr, attnBc, attnShortKeys)
	refs := map[string]*attnRef{}
	// The defaults (short causal blocks on the short tiles), then each
	// tiling for every block.
	testAttnBlockVsDense(t, "default", refs)
	attnShortKeys = 0
	for _, tile := range [][2]int{{96, 192}, {64, 64}, {16, 32}, {12, 192}, {18, 128}} {
		attnBr, attnBc = tile[0], tile[1]
		testAttnBlockVsDense(t, fmt.Sprintf("tile%dx%d", tile[0], tile[1]), refs)
	}
}

// attnRef caches one case's dense float64 results across tilings.
type attnRef struct{ o, lse, dq, dk, dv []float64 }

func testAttnBlockVsDense(t *testing.T, tiling string, refs map[string]*attnRef) {
	for _, tc := range attnCases() {
		for _, nblocks := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/%s/%dblocks", tiling, tc.name, nblocks), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(7, uint64(tc.nq)))
				nq, nk, h, d := tc.nq, tc.nk, tc.h, tc.d
				m := tc.mask(nq, nk)
				scale := float32(1 / math.Sqrt(float64(d)))
				q32, q64 := randSlice(rng, nq*h*d)
				k32, k64 := randSlice(rng, nk*h*d)
				v32, v64 := randSlice(rng, nk*h*d)
				do32, do64 := randSlice(rng, nq*h*d)
				ref := refs[tc.name]
				if ref == nil {
					ref = &attnRef{}
					ref.o, ref.lse = attnDenseRef(q64, k64, v64, nq, nk, h, d, float64(scale), m)
					ref.dq, ref.dk, ref.dv = attnDenseRefBwd(q64, k64, v64, do64, nq, nk, h, d, float64(scale), m)
					refs[tc.name] = ref
				}
				wantO, wantL, wdq, wdk, wdv := ref.o, ref.lse, ref.dq, ref.dk, ref.dv

				o, lse := make([]float32, nq*h*d), make([]float32, nq*h)
				o2, lse2 := make([]float32, nq*h*d), make([]float32, nq*h)
				bounds := blockBounds(nk, nblocks)
				for b := 0; b+1 < len(bounds); b++ {
					lo, hi := bounds[b], bounds[b+1]
					bm := subMaskK(m, lo, hi)
					if b == 0 {
						AttnBlockForward(q32, k32[lo*h*d:hi*h*d], v32[lo*h*d:hi*h*d], nq, hi-lo, h, d, scale, bm, o, lse)
						continue
					}
					AttnBlockForward(q32, k32[lo*h*d:hi*h*d], v32[lo*h*d:hi*h*d], nq, hi-lo, h, d, scale, bm, o2, lse2)
					AttnMerge(o, lse, o2, lse2, nq, h, d)
				}
				if e, at := maxRelErr(o, wantO); e > 1e-5 {
					t.Errorf("AttnBlockForward(%s): o[%d] = %g, want %g (rel err %.2g)", tc.name, at, o[at], wantO[at], e)
				}
				if e, at := maxRelErr(lse, wantL); e > 1e-5 {
					t.Errorf("AttnBlockForward(%s): lse[%d] = %g, want %g (rel err %.2g)", tc.name, at, lse[at], wantL[at], e)
				}
				delta := make([]float32, nq*h)
				AttnDelta(o, do32, nq, h, d, delta)
				dq, dk, dv := make([]float32, nq*h*d), make([]float32, nk*h*d), make([]float32, nk*h*d)
				for b := 0; b+1 < len(bounds); b++ {
					lo, hi := bounds[b], bounds[b+1]
					AttnBlockBackward(q32, k32[lo*h*d:hi*h*d], v32[lo*h*d:hi*h*d], do32, lse, delta, nq, hi-lo, h, d, scale,
						subMaskK(m, lo, hi), dq, dk[lo*h*d:hi*h*d], dv[lo*h*d:hi*h*d])
				}
				for _, g := range []struct {
					name string
					got  []float32
					want []float64
				}{{"dq", dq, wdq}, {"dk", dk, wdk}, {"dv", dv, wdv}} {
					if e, at := maxRelErr(g.got, g.want); e > 1e-5 {
						t.Errorf("AttnBlockBackward(%s): %s[%d] = %g, want %g (rel err %.2g)", tc.name, g.name, at, g.got[at], g.want[at], e)
					}
				}
			})
		}
	}
}

func blockBounds(n, parts int) []int {
	b := []int{0}
	for i := 1; i <= parts; i++ {
		b = append(b, n*i/parts)
	}
	return b
}

// subMaskK restricts a mask to the key rows [lo, hi).
func subMaskK(m *AttnMask, lo, hi int) *AttnMask {
	if m == nil {
		return nil
	}
	s := *m
	if s.KPos != nil {
		s.KPos = s.KPos[lo:hi]
	}
	if s.KSeg != nil {
		s.KSeg = s.KSeg[lo:hi]
	}
	return &s
}

// TestAttnDenseRefGrad checks the dense reference's backward itself by
// central finite differences in float64.
func TestAttnDenseRefGrad(t *testing.T) {
	for _, tc := range attnCases() {
		nq, nk, h, d := 5, 7, 2, 3
		m := tc.mask(nq, nk)
		if m != nil && m.Prefix != 0 {
			m.Prefix = 2
		}
		runCases(t, []opCase{{
			name:   "attnDense/" + tc.name,
			shapes: [][]int{{nq, h, d}, {nk, h, d}, {nk, h, d}},
			tape: func(tp *Tape, in []*Tensor) *Tensor {
				return tp.Attention(tp.Reshape(in[0], 1, nq, h, d), tp.Reshape(in[1], 1, nk, h, d), tp.Reshape(in[2], 1, nk, h, d),
					AttnOptions{Mask: m, Scale: 0.7})
			},
			ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
				o, _ := attnDenseRef(in[0], in[1], in[2], nq, nk, h, d, 0.7, m)
				return o, func(do []float64) [][]float64 {
					dq, dk, dv := attnDenseRefBwd(in[0], in[1], in[2], do, nq, nk, h, d, 0.7, m)
					return [][]float64{dq, dk, dv}
				}
			},
		}})
	}
}

func TestAttnMergeInf(t *testing.T) {
	ninf := float32(math.Inf(-1))
	o, lse := []float32{0, 0, 1, 2}, []float32{ninf, 0.5}
	o2, lse2 := []float32{3, 4, 5, 6}, []float32{0.1, ninf}
	AttnMerge(o, lse, o2, lse2, 2, 1, 2)
	want := []float32{3, 4, 1, 2}
	for i := range want {
		if o[i] != want[i] {
			t.Fatalf("AttnMerge with -Inf sides: o = %v, want %v", o, want)
		}
	}
	if lse[0] != 0.1 || lse[1] != 0.5 {
		t.Fatalf("AttnMerge with -Inf sides: lse = %v, want [0.1 0.5]", lse)
	}
}

// TestAttentionPerBatchMask checks that mask slices of B·S entries give
// each batch element its own mask: the batched call equals separate calls.
func TestAttentionPerBatchMask(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	const b, s, h, d = 2, 10, 2, 4
	q := Zeros(b, s, h, d).InitNormal(rng, 1)
	k := Zeros(b, s, h, d).InitNormal(rng, 1)
	v := Zeros(b, s, h, d).InitNormal(rng, 1)
	seg := []int32{0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2}
	pos := []int32{0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 0, 1, 0, 1}
	opt := AttnOptions{Causal: true, KeyLens: []int{10, 9}, Mask: &AttnMask{QSeg: seg, KSeg: seg, QPos: pos, KPos: pos}}
	all := NewTape().Attention(q, k, v, opt)
	tp := NewTape()
	for i := 0; i < b; i++ {
		one := func(x *Tensor) *Tensor { return tp.Reshape(tp.Slice(x, 0, i, i+1), 1, s, h, d) }
		sl := func(x []int32) []int32 { return x[i*s : (i+1)*s] }
		o := tp.Attention(one(q), one(k), one(v), AttnOptions{Causal: true, KeyLens: opt.KeyLens[i : i+1],
			Mask: &AttnMask{QSeg: sl(seg), KSeg: sl(seg), QPos: sl(pos), KPos: sl(pos)}})
		for j, want := range o.Data {
			if got := all.Data[i*s*h*d+j]; got != want {
				t.Fatalf("batch %d element %d: batched %g, alone %g", i, j, got, want)
			}
		}
	}
}

// TestTransposeHeads checks the register-tile transposes of k and v
// against the naive loop, on sizes that leave partial 16-blocks.
func TestTransposeHeads(t *testing.T) {
	for _, c := range []struct{ n, h, d int }{{1, 1, 1}, {5, 2, 3}, {17, 3, 16}, {40, 2, 64}, {256, 4, 64}, {33, 1, 128}} {
		x := make([]float32, c.n*c.h*c.d)
		for i := range x {
			x[i] = float32(i%97) - 40
		}
		got, ld := transposeHeads(x, c.n, c.h, c.d)
		want, wld := transposeHeadsRef(x, c.n, c.h, c.d)
		if ld != wld || len(got) != len(want) {
			t.Fatalf("transposeHeads(n=%d, h=%d, d=%d): ld %d len %d, want ld %d len %d", c.n, c.h, c.d, ld, len(got), wld, len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("transposeHeads(n=%d, h=%d, d=%d)[%d] = %g, want %g", c.n, c.h, c.d, i, got[i], want[i])
			}
		}
	}
}

// TestMaskTileCausal checks maskTile (the suffix fill for ascending key
// positions and the per-pair loop otherwise) against AttnMask.allowed on
// every pair, with and without a prefix, packed positions that restart,
// and segments.
func TestMaskTileCausal(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for trial := 0; trial < 40; trial++ {
		nq, nk := 1+rng.IntN(30), 1+rng.IntN(40)
		pos := func(n int) []int32 {
			p := make([]int32, n)
			for i := range p {
				p[i] = int32(i)
				if trial%3 == 1 {
					p[i] = int32(i % 7) // restarting (packed) positions: not ascending
				}
			}
			return p
		}
		m := &AttnMask{Causal: true, QPos: pos(nq), KPos: pos(nk), Prefix: int32(rng.IntN(5))}
		if trial%4 == 3 {
			m.QSeg, m.KSeg = make([]int32, nq), make([]int32, nk)
			for i := range m.KSeg {
				m.KSeg[i] = int32(i / 9)
			}
			for i := range m.QSeg {
				m.QSeg[i] = int32(i / 9)
			}
		}
		mt := newMaskTiles(m, nq, nk, attnBr, attnBc)
		for qt := 0; qt*attnBr < nq; qt++ {
			for kt := 0; kt*attnBc < nk; kt++ {
				i0, j0 := qt*attnBr, kt*attnBc
				br, bc := min(attnBr, nq-i0), min(attnBc, nk-j0)
				s := make([]float32, br*bc)
				mt.maskTile(s, i0, br, j0, bc, kt)
				for r := 0; r < br; r++ {
					for c := 0; c < bc; c++ {
						if masked := math.IsInf(float64(s[r*bc+c]), -1); masked == m.allowed(i0+r, j0+c) {
							t.Fatalf("trial %d: maskTile(q %d, k %d): masked=%v, allowed=%v (prefix %d)", trial, i0+r, j0+c, masked, m.allowed(i0+r, j0+c), m.Prefix)
						}
					}
				}
			}
		}
	}
}

// TestAttnBlockBackwardReproducible: with several workers, repeated
// backward passes over the same inputs give bit-identical dq, dk and dv
// (each worker's share of the key tiles is fixed, so its private dq
// partial sums, and their sum, do not depend on timing). With items handed
// out dynamically dq differed in the last bits from run to run, which made
// LWM's long stages not bit-reproducible.
func TestAttnBlockBackwardReproducible(t *testing.T) {
	defer SetMaxThreads(0)
	const nq, nk, h, d = 384, 384, 4, 16
	rng := rand.New(rand.NewPCG(3, 4))
	q, _ := randSlice(rng, nq*h*d)
	k, _ := randSlice(rng, nk*h*d)
	v, _ := randSlice(rng, nk*h*d)
	do, _ := randSlice(rng, nq*h*d)
	scale := float32(1 / math.Sqrt(d))
	pos := make([]int32, nq)
	for i := range pos {
		pos[i] = int32(i)
	}
	m := &AttnMask{Causal: true, QPos: pos, KPos: pos}
	o, lse := make([]float32, nq*h*d), make([]float32, nq*h)
	AttnBlockForward(q, k, v, nq, nk, h, d, scale, m, o, lse)
	delta := make([]float32, nq*h)
	AttnDelta(o, do, nq, h, d, delta)
	for _, threads := range []int{2, 4} {
		SetMaxThreads(threads)
		var first [3][]float32
		for run := 0; run < 20; run++ {
			dq, dk, dv := make([]float32, nq*h*d), make([]float32, nk*h*d), make([]float32, nk*h*d)
			AttnBlockBackward(q, k, v, do, lse, delta, nq, nk, h, d, scale, m, dq, dk, dv)
			if run == 0 {
				first = [3][]float32{dq, dk, dv}
				continue
			}
			for i, g := range [][]float32{dq, dk, dv} {
				if !slices.Equal(g, first[i]) {
					t.Fatalf("%d threads, run %d: %s differs from the first run's", threads, run, []string{"dq", "dk", "dv"}[i])
				}
			}
		}
	}
}
