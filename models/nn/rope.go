package nn

import (
	"math"

	"github.com/loomtrain/loom/kernels"
)

// RoPE holds the cos/sin tables of rotary position embeddings (Su et al.
// 2021, "RoFormer", eq. 34) for explicit position ids, in the rotate-half
// layout of Hugging Face's LlamaRotaryEmbedding: dimension i pairs with
// i+D/2, and θ_i = theta^(-2i/D). Position ids are explicit so that packed
// sequences restart at 0 for every segment.
type RoPE struct {
	Cos, Sin *kernels.Tensor // [B, 1, T, D], constants (no gradient)
}

// NewRoPE builds the tables for pos [B][T] and head dimension d.
func NewRoPE(pos [][]int, d int, theta float64) RoPE {
	b, t := len(pos), len(pos[0])
	cos := kernels.Zeros(b, 1, t, d)
	sin := kernels.Zeros(b, 1, t, d)
	half := d / 2
	for bi := range pos {
		for ti, p := range pos[bi] {
			row := (bi*t + ti) * d
			for i := 0; i < half; i++ {
				ang := float64(p) * math.Pow(theta, -2*float64(i)/float64(d))
				c, s := float32(math.Cos(ang)), float32(math.Sin(ang))
				cos.Data[row+i], cos.Data[row+i+half] = c, c
				sin.Data[row+i], sin.Data[row+i+half] = s, s
			}
		}
	}
	return RoPE{Cos: cos, Sin: sin}
}

// Apply rotates x [B, H, T, D]: x·cos + rotate_half(x)·sin, where
// rotate_half(x) = [-x₂, x₁]. Composed from kernels ops.
func (r RoPE) Apply(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	d := x.Shape[3]
	halves := tp.Split(x, 3, d/2, d/2)
	rot := tp.Concat(3, tp.Scale(halves[1], -1), halves[0])
	return tp.Add(tp.Mul(x, r.Cos), tp.Mul(rot, r.Sin))
}
