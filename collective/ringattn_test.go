package collective_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/collective/transporttest"
	"github.com/loomtrain/loom/kernels"
)

// denseAttn is the single-process float64 reference: forward and backward
// of softmax(scale·q·kᵀ + mask)·v over the whole sequence, with mask(i, j)
// saying whether query i may attend key j. Shapes [T, h, d].
func denseAttn(q, k, v, do []float32, T, h, d int, scale float64, allowed func(i, j int) bool) (o, dq, dk, dv []float64) {
	o = make([]float64, T*h*d)
	dq, dk, dv = make([]float64, T*h*d), make([]float64, T*h*d), make([]float64, T*h*d)
	at := func(x []float32, i, hh, e int) float64 { return float64(x[(i*h+hh)*d+e]) }
	p := make([]float64, T)
	dp := make([]float64, T)
	for hh := range h {
		for i := range T {
			m := math.Inf(-1)
			for j := range T {
				p[j] = math.Inf(-1)
				if !allowed(i, j) {
					continue
				}
				s := 0.0
				for e := range d {
					s += at(q, i, hh, e) * at(k, j, hh, e)
				}
				p[j] = scale * s
				m = math.Max(m, p[j])
			}
			if math.IsInf(m, -1) {
				continue
			}
			sum := 0.0
			for j := range T {
				p[j] = math.Exp(p[j] - m)
				sum += p[j]
			}
			for j := range T {
				p[j] /= sum
			}
			for e := range d {
				acc := 0.0
				for j := range T {
					acc += p[j] * at(v, j, hh, e)
				}
				o[(i*h+hh)*d+e] = acc
			}
			// Backward: dP = dO·Vᵀ, dS = P∘(dP − Σ P∘dP).
			dot := 0.0
			for j := range T {
				dp[j] = 0
				for e := range d {
					dp[j] += at(do, i, hh, e) * at(v, j, hh, e)
				}
				dot += p[j] * dp[j]
			}
			for j := range T {
				ds := p[j] * (dp[j] - dot)
				for e := range d {
					dq[(i*h+hh)*d+e] += scale * ds * at(k, j, hh, e)
					dk[(j*h+hh)*d+e] += scale * ds * at(q, i, hh, e)
					dv[(j*h+hh)*d+e] += p[j] * at(do, i, hh, e)
				}
			}
		}
	}
	return o, dq, dk, dv
}

// relErr is max|got − want| / max|want|.
func relErr(got []float32, want []float64) float64 {
	var num, den float64
	for i := range got {
		num = math.Max(num, math.Abs(float64(got[i])-want[i]))
		den = math.Max(den, math.Abs(want[i]))
	}
	if den == 0 {
		return num
	}
	return num / den
}

func randVec(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

type attnCase struct {
	name   string
	causal bool
	layout collective.Layout
	seg    bool
}

func TestRingAttention(t *testing.T) {
	const T, h, d = 32, 2, 8
	r := rand.New(rand.NewPCG(1, 2))
	q, k, v, do := randVec(r, T*h*d), randVec(r, T*h*d), randVec(r, T*h*d), randVec(r, T*h*d)
	// Packed sequences: three documents of 9, 15 and 8 tokens.
	seg := make([]int32, T)
	for i := range seg {
		switch {
		case i < 9:
			seg[i] = 0
		case i < 24:
			seg[i] = 1
		default:
			seg[i] = 2
		}
	}
	scale := 1 / math.Sqrt(d)
	for _, tc := range []attnCase{
		{"causal-zigzag", true, collective.Zigzag, false},
		{"causal-contiguous", true, collective.Contiguous, false},
		{"full-zigzag", false, collective.Zigzag, false},
		{"full-contiguous", false, collective.Contiguous, false},
		{"causal-zigzag-segments", true, collective.Zigzag, true},
		{"full-contiguous-segments", false, collective.Contiguous, true},
	} {
		allowed := func(i, j int) bool {
			if tc.seg && seg[i] != seg[j] {
				return false
			}
			return !tc.causal || j <= i
		}
		wo, wdq, wdk, wdv := denseAttn(q, k, v, do, T, h, d, scale, allowed)
		for _, world := range []int{1, 2, 4, 8} {
			t.Run(fmt.Sprintf("%s/world=%d", tc.name, world), func(t *testing.T) {
				got := runRingAttention(t, ring(t, world, 1, collective.Config{Job: "ra", SliceBytes: 512}), tc, T, h, d, q, k, v, do, seg)
				for _, c := range []struct {
					what string
					got  []float32
					want []float64
					tol  float64
				}{{"o", got[0], wo, 1e-5}, {"dq", got[1], wdq, 1e-4}, {"dk", got[2], wdk, 1e-4}, {"dv", got[3], wdv, 1e-4}} {
					if e := relErr(c.got, c.want); e > c.tol {
						t.Errorf("ring attention %s over %d ranks: %s relative error %.3g > %g against dense float64", tc.name, world, c.what, e, c.tol)
					}
				}
			})
		}
	}
}

// runRingAttention shards the full tensors by the layout, runs forward and
// backward on every rank and reassembles o, dq, dk and dv.
func runRingAttention(t *testing.T, comms []*collective.Comm, tc attnCase, T, h, d int, q, k, v, do []float32, seg []int32) [4][]float32 {
	t.Helper()
	world := len(comms)
	w := h * d
	var full [4][]float32
	for i := range full {
		full[i] = make([]float32, T*w)
	}
	local := make([][4][]float32, world)
	errs := onAll(comms, func(r int, c *collective.Comm) error {
		l := tc.layout
		cfg := collective.RingAttnConfig{Total: T, Heads: h, HeadDim: d, Causal: tc.causal, Layout: l}
		if tc.seg {
			for _, p := range l.Positions(T, world, r) {
				cfg.Seg = append(cfg.Seg, seg[p])
			}
		}
		lq, lk, lv, ldo := l.Shard(q, w, T, world, r), l.Shard(k, w, T, world, r), l.Shard(v, w, T, world, r), l.Shard(do, w, T, world, r)
		n := T / world
		o, lse := make([]float32, n*w), make([]float32, n*h)
		if err := c.RingAttentionForward(context.Background(), cfg, lq, lk, lv, o, lse); err != nil {
			return err
		}
		dq, dk, dv := make([]float32, n*w), make([]float32, n*w), make([]float32, n*w)
		if err := c.RingAttentionBackward(context.Background(), cfg, lq, lk, lv, o, lse, ldo, dq, dk, dv); err != nil {
			return err
		}
		local[r] = [4][]float32{o, dq, dk, dv}
		return nil
	})
	noErrors(t, "ring attention", errs)
	for r := range world {
		for i := range full {
			tc.layout.Unshard(full[i], local[r][i], w, T, world, r)
		}
	}
	return full
}

func TestLayoutPositions(t *testing.T) {
	for _, tc := range []struct {
		l                  collective.Layout
		total, world, rank int
		want               string
	}{
		{collective.Zigzag, 16, 4, 0, "[0 1 14 15]"},
		{collective.Zigzag, 16, 4, 1, "[2 3 12 13]"},
		{collective.Zigzag, 16, 4, 3, "[6 7 8 9]"},
		{collective.Contiguous, 16, 4, 1, "[4 5 6 7]"},
		{collective.Zigzag, 4, 1, 0, "[0 1 2 3]"},
	} {
		if got := fmt.Sprint(tc.l.Positions(tc.total, tc.world, tc.rank)); got != tc.want {
			t.Errorf("%v.Positions(%d, %d, %d) = %s, want %s", tc.l, tc.total, tc.world, tc.rank, got, tc.want)
		}
	}
}

// TestZigzagBalance: with a causal mask, zigzag gives every rank the same
// work at every step after the first, and the naive layout does not.
func TestZigzagBalance(t *testing.T) {
	const total, world = 64, 4
	for _, l := range []collective.Layout{collective.Zigzag, collective.Contiguous} {
		var per [world]int
		for r := range world {
			for s := range world {
				per[r] += collective.StepWork(true, l, total, world, r, s)
			}
		}
		lo, hi := per[0], per[0]
		for _, w := range per {
			lo, hi = min(lo, w), max(hi, w)
		}
		if balanced := lo == hi; balanced != (l == collective.Zigzag) {
			t.Errorf("%v: per-rank work %v (balanced=%v)", l, per, balanced)
		}
	}
}

func TestRingAttentionRejectsBadShapes(t *testing.T) {
	comms := ring(t, 2, 1, collective.Config{Job: "ra"})
	cfg := collective.RingAttnConfig{Total: 6, Heads: 1, HeadDim: 2, Causal: true, Layout: collective.Zigzag}
	err := comms[0].RingAttentionForward(context.Background(), cfg, make([]float32, 6), make([]float32, 6), make([]float32, 6), make([]float32, 6), make([]float32, 3))
	if err == nil {
		t.Fatal("zigzag over 2 ranks with sequence length 6 (not a multiple of 4): no error")
	}
}

// TestRingAttentionLongBlocks uses blocks longer than the kernel's 64-row
// tiles and an odd chunk length, so that the zigzag diagonal block's three
// sub-blocks and the kernel's partial tiles are all exercised.
func TestRingAttentionLongBlocks(t *testing.T) {
	const T, h, d = 4 * 139, 1, 4
	r := rand.New(rand.NewPCG(5, 6))
	q, k, v, do := randVec(r, T*h*d), randVec(r, T*h*d), randVec(r, T*h*d), randVec(r, T*h*d)
	seg := make([]int32, T)
	for i := range seg {
		seg[i] = int32(i / 200)
	}
	for _, tc := range []attnCase{
		{"causal-zigzag", true, collective.Zigzag, false},
		{"causal-contiguous", true, collective.Contiguous, false},
		{"causal-zigzag-segments", true, collective.Zigzag, true},
	} {
		allowed := func(i, j int) bool { return j <= i && (!tc.seg || seg[i] == seg[j]) }
		wo, wdq, wdk, wdv := denseAttn(q, k, v, do, T, h, d, 0.5, allowed)
		for _, world := range []int{1, 2} {
			got := runRingAttention(t, ring(t, world, 1, collective.Config{Job: "ra"}), tc, T, h, d, q, k, v, do, seg)
			for i, want := range [][]float64{wo, wdq, wdk, wdv} {
				tol := 1e-4
				if i == 0 {
					tol = 1e-5
				}
				if e := relErr(got[i], want); e > tol {
					t.Errorf("%s over %d ranks: output %d relative error %.3g > %g", tc.name, world, i, e, tol)
				}
			}
		}
	}
}

// TestRingAttentionSilentPeer: a rank that never joins the ring-attention
// forward makes every other rank fail within the timeout, naming the
// operation, with nothing left running.
func TestRingAttentionSilentPeer(t *testing.T) {
	before := runtime.NumGoroutine()
	const world, T, h, d = 4, 16, 1, 4
	comms := ring(t, world, 1, collective.Config{Job: "ra", Timeout: 200 * time.Millisecond})
	errs := make([]error, world)
	var wg sync.WaitGroup
	for r, c := range comms {
		if r == 1 {
			continue
		}
		wg.Go(func() {
			n := T / world
			cfg := collective.RingAttnConfig{Total: T, Heads: h, HeadDim: d, Causal: true, Layout: collective.Zigzag}
			x := make([]float32, n*h*d)
			errs[r] = c.RingAttentionForward(context.Background(), cfg, x, x, x, make([]float32, n*h*d), make([]float32, n*h))
		})
	}
	wait(t, &wg)
	for r, err := range errs {
		if r == 1 {
			continue
		}
		var oe *collective.OpError
		if !errors.As(err, &oe) || oe.Op != collective.OpRingAttnFwd {
			t.Errorf("rank %d: err = %v, want a ringattn-forward *OpError", r, err)
		}
	}
	for _, c := range comms {
		c.Close()
	}
	transporttest.CheckNoLeaks(t, before)
}

// TestRoPEAtGlobalPositions: rotating each rank's rows at
// Layout.Positions gives exactly the rows of the rotated full sequence, so a
// rank applies RoPE locally before the ring.
func TestRoPEAtGlobalPositions(t *testing.T) {
	const T, h, d = 32, 2, 8
	r := rand.New(rand.NewPCG(7, 7))
	x := randVec(r, T*h*d)
	all := make([]int32, T)
	for i := range all {
		all[i] = int32(i)
	}
	full := kernels.NewTape().RoPE(kernels.New(x, T, h, d), kernels.RoPEConfig{Theta: 10000, Pos: all}).Data
	for _, l := range []collective.Layout{collective.Zigzag, collective.Contiguous} {
		for _, world := range []int{1, 2, 4, 8} {
			for rank := range world {
				local := l.Shard(x, h*d, T, world, rank)
				got := kernels.NewTape().RoPE(kernels.New(local, T/world, h, d), kernels.RoPEConfig{Theta: 10000, Pos: l.Positions(T, world, rank)}).Data
				want := l.Shard(full, h*d, T, world, rank)
				if at := firstDiff(got, want); at >= 0 {
					t.Fatalf("%v world %d rank %d: RoPE at global positions differs from the full sequence's at element %d: %v vs %v", l, world, rank, at, got[at], want[at])
				}
			}
		}
	}
}

func firstDiff(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}
