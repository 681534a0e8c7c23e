package kernels

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// hookGraph records a random graph on tp over the given parameters: a chain
// of Linear, Add, Mul and GELU ops in which parameters are reused at random
// places (tied weights), one parameter feeds a branch that never reaches the
// loss, and one is never used. It returns the scalar loss.
func hookGraph(tp *Tape, rng *rand.Rand, x *Tensor, ws []*Tensor, dead, unused *Tensor) *Tensor {
	_ = unused
	tp.Linear(x, dead, nil) // recorded, but its output reaches no loss
	h := x
	for k := 0; k < 12; k++ {
		w := ws[rng.IntN(len(ws))]
		switch rng.IntN(4) {
		case 0:
			h = tp.Linear(h, w, nil)
		case 1:
			h = tp.Add(h, tp.Linear(x, w, nil))
		case 2:
			h = tp.Mul(h, tp.Tanh(tp.Linear(h, w, nil)))
		default:
			h = tp.GELU(h)
		}
	}
	return tp.Mean(tp.Square(h))
}

func hookParams(rng *rand.Rand, n, d int) (ws []*Tensor, dead, unused *Tensor) {
	mk := func(name string) *Tensor {
		p := NewParam(name, d, d)
		for i := range p.Data {
			p.Data[i] = float32(rng.NormFloat64() / 3)
		}
		return p
	}
	for i := 0; i < n; i++ {
		ws = append(ws, mk(fmt.Sprintf("w%d", i)))
	}
	return ws, mk("dead"), mk("unused")
}

// TestBackwardWithHook: the hook fires once per leaf the tape used, at a
// point where that leaf's gradient already equals its final value, in an
// order consistent with the reverse of the recording order (the
// reference: each leaf's earliest use, found by a full scan, decreasing);
// the gradients equal those of plain Backward bit for bit.
func TestBackwardWithHook(t *testing.T) {
	const d = 6
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			x := New(make([]float32, 3*d), 3, d)
			xr := rand.New(rand.NewPCG(seed, 99))
			for i := range x.Data {
				x.Data[i] = float32(xr.NormFloat64())
			}
			// Reference: plain Backward.
			ws, dead, unused := hookParams(rand.New(rand.NewPCG(seed, 1)), 4, d)
			tp := NewTape()
			tp.Backward(hookGraph(tp, rand.New(rand.NewPCG(seed, 2)), x, ws, dead, unused))
			want := map[string][]float32{}
			for _, p := range append(ws, dead, unused) {
				want[p.Name] = slices.Clone(p.Grad)
			}

			ws, dead, unused = hookParams(rand.New(rand.NewPCG(seed, 1)), 4, d)
			tp = NewTape()
			loss := hookGraph(tp, rand.New(rand.NewPCG(seed, 2)), x, ws, dead, unused)
			firstUse := tp.leafFirstUseNaive()
			var order []*Tensor
			atHook := map[*Tensor][]float32{}
			tp.BackwardWithHook(loss, func(p *Tensor) {
				if _, twice := atHook[p]; twice {
					t.Errorf("BackwardWithHook: ready(%s) called twice", p.Name)
				}
				atHook[p] = slices.Clone(p.Grad)
				order = append(order, p)
			})
			if len(atHook) != len(firstUse) {
				t.Errorf("BackwardWithHook: ready called for %d leaves, the tape used %d", len(atHook), len(firstUse))
			}
			for p := range firstUse {
				if _, ok := atHook[p]; !ok {
					t.Errorf("BackwardWithHook: ready(%s) never called, though op %d used it", p.Name, firstUse[p])
				}
			}
			if _, ok := atHook[unused]; ok {
				t.Errorf("BackwardWithHook: ready(unused) called for a leaf no op used")
			}
			if g := atHook[dead]; g != nil {
				t.Errorf("BackwardWithHook: ready(dead) saw gradient %v, want none (no gradient reaches its op)", g)
			}
			for _, p := range append(ws, dead, unused) {
				if !slices.Equal(p.Grad, want[p.Name]) {
					t.Errorf("BackwardWithHook: %s.Grad = %v, Backward gives %v", p.Name, p.Grad, want[p.Name])
				}
				if g, ok := atHook[p]; ok && !slices.Equal(g, p.Grad) {
					t.Errorf("BackwardWithHook: %s.Grad at ready = %v, after the sweep %v: ready came before the last accumulation", p.Name, g, p.Grad)
				}
			}
			for i := 1; i < len(order); i++ {
				if firstUse[order[i]] > firstUse[order[i-1]] {
					t.Errorf("BackwardWithHook: ready(%s) (first used by op %d) after ready(%s) (op %d): want decreasing first use",
						order[i].Name, firstUse[order[i]], order[i-1].Name, firstUse[order[i-1]])
				}
			}
		})
	}
}

// TestLeafScheduleMatchesNaive: the map-based schedule equals the full-scan
// reference on random graphs.
func TestLeafScheduleMatchesNaive(t *testing.T) {
	x := Full(0.5, 2, 5)
	for seed := uint64(1); seed <= 10; seed++ {
		ws, dead, unused := hookParams(rand.New(rand.NewPCG(seed, 1)), 3, 5)
		tp := NewTape()
		hookGraph(tp, rand.New(rand.NewPCG(seed, 2)), x, ws, dead, unused)
		got := map[*Tensor]int{}
		for i, leaves := range tp.leafSchedule() {
			for _, p := range leaves {
				if _, dup := got[p]; dup {
					t.Errorf("seed %d: leafSchedule lists %s twice", seed, p.Name)
				}
				got[p] = i
			}
		}
		want := tp.leafFirstUseNaive()
		if len(got) != len(want) {
			t.Errorf("seed %d: leafSchedule() has %d leaves, want %d", seed, len(got), len(want))
		}
		for p, i := range want {
			if got[p] != i {
				t.Errorf("seed %d: leafSchedule() puts %s at op %d, want %d", seed, p.Name, got[p], i)
			}
		}
	}
}

// TestBackwardWithHookNilTape: a nil tape records nothing and calls nothing.
func TestBackwardWithHookNilTape(t *testing.T) {
	var tp *Tape
	tp.BackwardWithHook(Scalar(1), func(*Tensor) { t.Error("ready called on a nil tape") })
}

// A gradient all-reduce can start on a parameter as soon as its gradient is
// final, while the backward pass goes on with earlier layers.
func ExampleTape_BackwardWithHook() {
	w1, w2 := NewParam("w1", 2, 2), NewParam("w2", 2, 2)
	copy(w1.Data, []float32{1, 0, 0, 1})
	copy(w2.Data, []float32{2, 0, 0, 2})
	tp := NewTape()
	x := New([]float32{1, 2}, 1, 2)
	loss := tp.Sum(tp.Linear(tp.Linear(x, w1, nil), w2, nil))
	tp.BackwardWithHook(loss, func(p *Tensor) {
		fmt.Println(p.Name, "final:", p.Grad)
	})
	// Output:
	// w2 final: [1 2 1 2]
	// w1 final: [2 4 2 4]
}

// TestCustom: a Custom op (here y = 3x, written by hand) takes part in
// backward like a built-in one, and records nothing on a nil tape or when
// no input requires a gradient.
func TestCustom(t *testing.T) {
	w := NewParam("w", 2)
	copy(w.Data, []float32{1, -2})
	triple := func(tp *Tape, x *Tensor) *Tensor {
		out := New([]float32{3 * x.Data[0], 3 * x.Data[1]}, 2)
		return tp.Custom("Triple", out, func() {
			g := x.GradBuf()
			for i := range g {
				g[i] += 3 * out.Grad[i]
			}
		}, x)
	}
	tp := NewTape()
	tp.Backward(tp.Sum(tp.Mul(triple(tp, w), w))) // d/dw Σ 3w² = 6w
	if !slices.Equal(w.Grad, []float32{6, -12}) {
		t.Errorf("Custom: w.Grad = %v, want [6 -12]", w.Grad)
	}
	if tp := NewTape(); triple(tp, Full(1, 2)).RequiresGrad() || tp.Len() != 0 {
		t.Errorf("Custom on a constant: recorded %d ops, want none", tp.Len())
	}
	var nilTape *Tape
	if triple(nilTape, w).RequiresGrad() {
		t.Errorf("Custom on a nil tape: output requires a gradient")
	}
}
