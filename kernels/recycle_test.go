package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestRecycledGradients runs graphs whose backward sweep recycles and
// hands over gradient buffers (Reshape of a leaf, residual Adds, many
// same-length intermediates, a tensor used several times) and compares
// every leaf gradient with the reference sweep that allocates a fresh
// buffer for every tensor. Two Backward calls check that the leaves
// accumulate and never alias a recycled buffer.
func TestRecycledGradients(t *testing.T) {
	build := func(tp *Tape, x, w, b, w2 *Tensor) *Tensor {
		r := tp.Reshape(x, 4, 6)                   // a leaf's gradient handed over by Reshape
		h := tp.Add(r, tp.Linear(r, w, b))         // residual: out.Grad handed to r
		h = tp.Add(h, tp.GELU(tp.Linear(h, w, b))) // same-length intermediates
		h = tp.Add(tp.Mul(h, h), h)                // h used three times
		h = tp.Add(h, h)                           // a == b: no hand-over
		s := tp.Sub(tp.Linear(h, w2, nil), tp.Reshape(x, 4, 6))
		// Split into a recycled (garbage-filled) buffer; the middle piece
		// gets no gradient.
		sp := tp.Split(tp.GELU(tp.Linear(s, w, b)), -1, 2, 1, 3)
		return tp.Add(tp.Mean(tp.Square(s)), tp.Add(tp.Mean(tp.Square(sp[0])), tp.Mean(tp.Mul(sp[2], sp[2]))))
	}
	for _, seed := range []uint64{1, 2, 3} {
		mk := func() [4]*Tensor {
			r := rand.New(rand.NewPCG(seed, 9))
			return [4]*Tensor{
				NewParam("x", 24).InitNormal(r, 1),
				NewParam("w", 6, 6).InitNormal(r, 0.5),
				NewParam("b", 6).InitNormal(r, 0.5),
				NewParam("w2", 6, 6).InitNormal(r, 0.5),
			}
		}
		got, want := mk(), mk()
		for pass := 0; pass < 2; pass++ {
			tp := NewTape()
			tp.Backward(build(tp, got[0], got[1], got[2], got[3]))
			ref := NewTape()
			ref.noRecycle = true
			ref.Backward(build(ref, want[0], want[1], want[2], want[3]))
		}
		for i := range got {
			for j := range got[i].Grad {
				if g, w := got[i].Grad[j], want[i].Grad[j]; g != w {
					t.Fatalf("seed %d: %s.Grad[%d] = %g with recycled buffers, want %g (fresh buffers)", seed, got[i].Name, j, g, w)
				}
			}
		}
	}
}

// TestRecycleKeepsInputGradients checks the rule that recycle never takes
// a buffer an input still owns.
func TestRecycleKeepsInputGradients(t *testing.T) {
	a := make([]float32, 8)
	for _, c := range []struct {
		a, b []float32
		want bool
	}{
		{a, a, true}, {a[2:4], a[3:8], true}, {a[:2], a[2:], false}, {nil, a, false}, {a[:0], a, false},
	} {
		if got := overlaps(c.a, c.b); got != c.want {
			t.Errorf("overlaps(len %d, len %d) = %v, want %v", len(c.a), len(c.b), got, c.want)
		}
	}
	x := NewParam("x", 2, 3).Fill(1)
	tp := NewTape()
	r := tp.Reshape(x, 6)
	tp.Backward(tp.Sum(r))
	if x.Grad == nil || x.Grad[5] != 1 {
		t.Fatalf("Reshape of a leaf: x.Grad = %v, want all ones", x.Grad)
	}
	if tp.free != nil {
		t.Errorf("free list kept after the sweep: %v", fmt.Sprint(len(tp.free)))
	}
}
