package nn

import (
	"math"
	"math/rand/v2"

	"github.com/loomtrain/loom/kernels"
)

// InitStd is the standard deviation of the normal initialisation of weight
// matrices and embeddings (BERT's and GPT-2's initializer_range 0.02).
const InitStd = 0.02

// Rng returns the deterministic generator a model is built with.
func Rng(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

// Linear is nn.Linear: y = x·Wᵀ + b with W [out, in] and b [out] or nil.
type Linear struct{ W, B *kernels.Tensor }

// NewLinear adds name.weight (N(0, 0.02²)) and, with bias, name.bias (zeros).
func NewLinear(p *Params, rng *rand.Rand, name string, in, out int, bias bool) Linear {
	l := Linear{W: p.Add(name+".weight", out, in).InitNormal(rng, InitStd)}
	if bias {
		l.B = p.Add(name+".bias", out)
	}
	return l
}

// LinearParams counts the parameters NewLinear creates.
func LinearParams(in, out int, bias bool) int {
	if bias {
		return in*out + out
	}
	return in * out
}

// Forward applies the layer to x [..., in].
func (l Linear) Forward(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	return tp.Linear(x, l.W, l.B)
}

// LayerNorm is nn.LayerNorm over the last dimension (weight ones, bias zeros).
type LayerNorm struct {
	W, B *kernels.Tensor
	Eps  float32
}

// NewLayerNorm adds name.weight and name.bias of size dim.
func NewLayerNorm(p *Params, name string, dim int, eps float32) LayerNorm {
	return LayerNorm{W: p.Add(name+".weight", dim).Fill(1), B: p.Add(name+".bias", dim), Eps: eps}
}

// Forward normalises the last dimension of x.
func (l LayerNorm) Forward(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	return tp.LayerNorm(x, l.W, l.B, l.Eps)
}

// RMSNorm is LLaMA's RMSNorm (Zhang & Sennrich 2019) with a weight only.
type RMSNorm struct {
	W   *kernels.Tensor
	Eps float32
}

// NewRMSNorm adds name.weight (ones).
func NewRMSNorm(p *Params, name string, dim int, eps float32) RMSNorm {
	return RMSNorm{W: p.Add(name+".weight", dim).Fill(1), Eps: eps}
}

// Forward normalises the last dimension of x.
func (l RMSNorm) Forward(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	return tp.RMSNorm(x, l.W, l.Eps)
}

// SplitHeads turns x [B, T, H·D] into [B, H, T, D].
func SplitHeads(tp *kernels.Tape, x *kernels.Tensor, heads int) *kernels.Tensor {
	b, t, c := x.Shape[0], x.Shape[1], x.Shape[2]
	return tp.Permute(tp.Reshape(x, b, t, heads, c/heads), 0, 2, 1, 3)
}

// MergeHeads turns x [B, H, T, D] into [B, T, H·D].
func MergeHeads(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	b, h, t, d := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	return tp.Reshape(tp.Permute(x, 0, 2, 1, 3), b, t, h*d)
}

// Attend is scaled dot-product attention, softmax(q·kᵀ/√D + bias)·v, for q
// [B, H, Tq, D], k and v [B, H, Tk, D] and an additive bias broadcastable
// to [B, H, Tq, Tk] (0 where allowed, -1e9 where masked; see Mask.Bias) or
// nil. It is composed from kernels ops (MatmulT, Scale, Add, Softmax,
// Matmul), so its gradient comes from their backward rules; it is the dense
// reference the blockwise kernel is compared with.
func Attend(tp *kernels.Tape, q, k, v, bias *kernels.Tensor) *kernels.Tensor {
	d := q.Shape[len(q.Shape)-1]
	s := tp.Scale(tp.MatmulT(q, k, false, true), float32(1/math.Sqrt(float64(d))))
	if bias != nil {
		s = tp.Add(s, bias)
	}
	return tp.Matmul(tp.Softmax(s), v)
}

// MLP is the two-layer feed-forward fc1 → GELU → fc2 of ViT and BERT.
type MLP struct {
	FC1, FC2 Linear
	ErfGELU  bool // exact erf GELU (BERT, CLIP-L uses quick_gelu; see ViT)
}

// Forward applies the MLP to x [..., dim].
func (m MLP) Forward(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	h := m.FC1.Forward(tp, x)
	if m.ErfGELU {
		h = tp.GELUErf(h)
	} else {
		h = tp.GELU(h)
	}
	return m.FC2.Forward(tp, h)
}
