package nn

import (
	"math"
	"slices"
	"testing"

	"github.com/loomtrain/loom/kernels"
)

// TestGQAEqualsRepeatedMHA: grouped-query attention with KVHeads K/V heads
// gives the outputs of full multi-head attention whose K/V projections
// repeat each KV head's rows for the Heads/KVHeads query heads that read
// it (repeat-interleave, Hugging Face's repeat_kv), with an explicit
// HeadDim that differs from dim/Heads.
func TestGQAEqualsRepeatedMHA(t *testing.T) {
	const dim, heads, kvHeads, hd, b, s = 12, 4, 2, 4, 2, 5
	p := NewParams()
	g := NewAttention(p, Rng(3), [4]string{"q", "k", "v", "o"}, AttnSpec{Dim: dim, Heads: heads, KVHeads: kvHeads, HeadDim: hd, QKVBias: true, OutBias: true})
	if got, want := AttentionParams(AttnSpec{Dim: dim, Heads: heads, KVHeads: kvHeads, HeadDim: hd, QKVBias: true, OutBias: true}), p.Count(); got != want {
		t.Fatalf("AttentionParams = %d, NewAttention built %d", got, want)
	}
	for _, n := range []string{"q.bias", "k.bias", "v.bias", "o.bias"} {
		for i := range p.Get(n).Data {
			p.Get(n).Data[i] = 0.01 * float32(i+1)
		}
	}
	p2 := NewParams()
	full := NewAttention(p2, Rng(4), [4]string{"q", "k", "v", "o"}, AttnSpec{Dim: dim, Heads: heads, HeadDim: hd, QKVBias: true, OutBias: true})
	copy(full.Q.W.Data, g.Q.W.Data)
	copy(full.Q.B.Data, g.Q.B.Data)
	copy(full.O.W.Data, g.O.W.Data)
	copy(full.O.B.Data, g.O.B.Data)
	rep := heads / kvHeads
	for h := 0; h < heads; h++ {
		src := h / rep
		for _, pr := range [][2]Linear{{g.K, full.K}, {g.V, full.V}} {
			copy(pr[1].W.Data[h*hd*dim:(h+1)*hd*dim], pr[0].W.Data[src*hd*dim:(src+1)*hd*dim])
			copy(pr[1].B.Data[h*hd:(h+1)*hd], pr[0].B.Data[src*hd:(src+1)*hd])
		}
	}
	x := kernels.Zeros(b, s, dim)
	for i := range x.Data {
		x.Data[i] = float32(math.Sin(float64(i) * 0.7))
	}
	rope := &kernels.RoPEConfig{Theta: 10000, Pos: []int32{0, 1, 2, 3, 4}}
	opt := kernels.AttnOptions{Causal: true}
	got := g.Forward(nil, x, nil, opt, rope)
	want := full.Forward(nil, x, nil, opt, rope)
	if !slices.Equal(got.Shape, []int{b, s, dim}) {
		t.Fatalf("GQA output shape %v, want [%d %d %d]", got.Shape, b, s, dim)
	}
	for i := range want.Data {
		if d := math.Abs(float64(got.Data[i] - want.Data[i])); d > 1e-6 {
			t.Fatalf("GQA output %d = %v, repeated-KV MHA gives %v", i, got.Data[i], want.Data[i])
		}
	}
}

// TestRepeatKVBackwardSums: the gradient of a repeated KV head is the sum
// of its copies' gradients.
func TestRepeatKVBackwardSums(t *testing.T) {
	x := kernels.Zeros(1, 1, 2, 1)
	x.Data[0], x.Data[1] = 1, 2
	x.SetRequiresGrad(true)
	tp := kernels.NewTape()
	y := RepeatKV(tp, x, 3)
	if want := []float32{1, 1, 1, 2, 2, 2}; !slices.Equal(y.Data, want) {
		t.Fatalf("RepeatKV([1 2], 3) = %v, want %v", y.Data, want)
	}
	tp.BackwardFrom(y, []float32{1, 2, 3, 4, 5, 6})
	if want := []float32{6, 15}; !slices.Equal(x.Grad, want) {
		t.Fatalf("RepeatKV backward = %v, want %v", x.Grad, want)
	}
}
