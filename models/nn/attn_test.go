package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/loomtrain/loom/kernels"
)

// TestKernelMasksMatchExplicit checks that the kernels.Attention options the
// models use produce the same outputs as dense attention with the explicit
// mask matrices of mask.go (Attend, the reference).
func TestKernelMasksMatchExplicit(t *testing.T) {
	const b, h, d = 2, 2, 4
	idx := func(n int) []int32 {
		p := make([]int32, n)
		for i := range p {
			p[i] = int32(i)
		}
		return p
	}
	unimodal := []int32{0, 0, 1, 1, 1}
	seg := []int32{0, 0, 1, 1, 1, 2}
	tests := []struct {
		name string
		n    int
		opt  kernels.AttnOptions
		mask []Mask // one per batch row
	}{
		{"causal", 5, kernels.AttnOptions{Causal: true}, []Mask{Causal(5), Causal(5)}},
		{"UniLM (ITG)", 5, kernels.AttnOptions{Causal: true, Prefix: 2}, []Mask{UniLM(2, 3), UniLM(2, 3)}},
		{"unimodal (ITC)", 5, kernels.AttnOptions{Mask: &kernels.AttnMask{QSeg: unimodal, KSeg: unimodal}}, []Mask{Unimodal(2, 3), Unimodal(2, 3)}},
		{"packed segments", 6, kernels.AttnOptions{Causal: true, Mask: &kernels.AttnMask{Causal: true, QPos: idx(6), KPos: idx(6), QSeg: seg, KSeg: seg}},
			[]Mask{Segment([]int{0, 0, 1, 1, 1, 2}), Segment([]int{0, 0, 1, 1, 1, 2})}},
		{"padding + bidirectional (ITM, InstructBLIP)", 5, kernels.AttnOptions{KeyLens: []int{5, 3}},
			[]Mask{Full(5, 5), Padding(5, []bool{true, true, true, false, false})}},
		{"padding + causal", 4, kernels.AttnOptions{Causal: true, KeyLens: []int{2, 4}},
			[]Mask{And(Causal(4), Padding(4, []bool{true, true, false, false})), Causal(4)}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range tests {
		mk := func() *kernels.Tensor { // [B, T, H, D]
			x := kernels.Zeros(b, tc.n, h, d)
			for i := range x.Data {
				x.Data[i] = float32(rng.NormFloat64())
			}
			return x
		}
		q, k, v := mk(), mk(), mk()
		got := (*kernels.Tape)(nil).Attention(q, k, v, tc.opt)
		perm := func(x *kernels.Tensor) *kernels.Tensor { return (*kernels.Tape)(nil).Permute(x, 0, 2, 1, 3) }
		want := perm(Attend(nil, perm(q), perm(k), perm(v), Bias(tc.mask...)))
		for i := range want.Data {
			if math.Abs(float64(got.Data[i]-want.Data[i])) > 1e-4 {
				t.Errorf("%s: kernels.Attention(%+v) differs from Attend with the explicit mask at %d: %v vs %v",
					tc.name, tc.opt, i, got.Data[i], want.Data[i])
				break
			}
		}
	}
}
