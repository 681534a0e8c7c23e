package kernels

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRecompute: a stack of pre-norm residual blocks (RMSNorm, causal
// attention, SwiGLU MLP), each run through Recompute, gives the loss and
// the gradients of every parameter and of the input bit for bit as the
// same blocks recorded directly; a second backward through a fresh tape
// agrees too (the recomputation leaves no state behind).
func TestRecompute(t *testing.T) {
	const b, s, h, heads, ffn, layers = 2, 24, 32, 4, 48, 3
	rng := rand.New(rand.NewPCG(5, 6))
	param := func(shape ...int) *Tensor {
		p := NewParam("p", shape...)
		for i := range p.Data {
			p.Data[i] = float32(rng.NormFloat64() * 0.2)
		}
		return p
	}
	type blk struct{ norm, wq, wk, wv, wo, gate, up, down *Tensor }
	var blocks []blk
	var params []*Tensor
	for range layers {
		bl := blk{norm: param(h), wq: param(h, h), wk: param(h, h), wv: param(h, h), wo: param(h, h), gate: param(ffn, h), up: param(ffn, h), down: param(h, ffn)}
		blocks = append(blocks, bl)
		params = append(params, bl.norm, bl.wq, bl.wk, bl.wv, bl.wo, bl.gate, bl.up, bl.down)
	}
	x0 := param(b, s, h)
	params = append(params, x0)
	block := func(bl blk) func(tp *Tape, x *Tensor) *Tensor {
		return func(tp *Tape, x *Tensor) *Tensor {
			n := tp.RMSNorm(x, bl.norm, 1e-6)
			q := tp.Reshape(tp.Linear(n, bl.wq, nil), b, s, heads, h/heads)
			k := tp.Reshape(tp.Linear(n, bl.wk, nil), b, s, heads, h/heads)
			v := tp.Reshape(tp.Linear(n, bl.wv, nil), b, s, heads, h/heads)
			a := tp.Reshape(tp.Attention(q, k, v, AttnOptions{Causal: true}), b, s, h)
			x = tp.Add(x, tp.Linear(a, bl.wo, nil))
			return tp.Add(x, tp.Linear(tp.SwiGLU(tp.Linear(x, bl.gate, nil), tp.Linear(x, bl.up, nil)), bl.down, nil))
		}
	}
	run := func(recompute bool) (float32, [][]float32) {
		for _, p := range params {
			p.Grad = nil
		}
		tp := NewTape()
		x := x0
		for _, bl := range blocks {
			if recompute {
				x = tp.Recompute(x, block(bl))
			} else {
				x = block(bl)(tp, x)
			}
		}
		loss := tp.Sum(tp.Mul(x, x))
		l := loss.Item()
		tp.Backward(loss)
		var grads [][]float32
		for _, p := range params {
			grads = append(grads, slices.Clone(p.Grad))
		}
		return l, grads
	}
	wantLoss, want := run(false)
	for round := range 2 {
		loss, got := run(true)
		if loss != wantLoss {
			t.Errorf("round %d: loss %v with Recompute, %v without", round, loss, wantLoss)
		}
		for i := range want {
			if want[i] == nil || !slices.Equal(got[i], want[i]) {
				t.Errorf("round %d: gradient of parameter %d differs with Recompute (or is nil)", round, i)
			}
		}
	}
}

// TestRecomputeFrozen: with every parameter frozen and an input that needs
// no gradient, Recompute records nothing: y needs no gradient, so no
// backward pass will run the block again.
func TestRecomputeFrozen(t *testing.T) {
	w := New([]float32{1, 2, 3, 4}, 2, 2)
	x := New([]float32{1, 1}, 1, 2)
	tp := NewTape()
	y := tp.Recompute(x, func(tp *Tape, x *Tensor) *Tensor { return tp.Linear(x, w, nil) })
	if !slices.Equal(y.Data, []float32{3, 7}) {
		t.Fatalf("y = %v, want [3 7]", y.Data)
	}
	if y.RequiresGrad() || tp.Len() != 0 {
		t.Errorf("frozen block: y requires a gradient %v, %d ops recorded; want neither", y.RequiresGrad(), tp.Len())
	}
	// With the input wanting one, the op is recorded and its gradient is
	// wᵀ·dy.
	x.SetRequiresGrad(true)
	y = tp.Recompute(x, func(tp *Tape, x *Tensor) *Tensor { return tp.Linear(x, w, nil) })
	tp.BackwardFrom(y, []float32{1, 1})
	if !slices.Equal(x.Grad, []float32{4, 6}) || w.Grad != nil {
		t.Errorf("x.Grad = %v (want [4 6]), w.Grad = %v (want nil)", x.Grad, w.Grad)
	}
}
