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

// MLP is the two-layer feed-forward fc1 → activation → fc2 of ViT and BERT.
type MLP struct {
	FC1, FC2 Linear
	Act      Act
}

// Forward applies the MLP to x [..., dim].
func (m MLP) Forward(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	return m.FC2.Forward(tp, m.Act.Apply(tp, m.FC1.Forward(tp, x)))
}

// MHA is multi-head attention with separate q/k/v/output projections
// (Hugging Face CLIP, LLaMA and BERT all store them separately).
type MHA struct {
	Q, K, V, O Linear
	Heads      int
	// KVHeads is the number of key/value heads (grouped-query attention,
	// Ainslie et al. 2023): query head h reads KV head h/(Heads/KVHeads),
	// Hugging Face's repeat_kv (repeat-interleave). 0 means Heads.
	KVHeads int
	// HeadDim is the per-head width when Heads·HeadDim is not the model
	// width (explicit head_dim); 0 means dim/Heads.
	HeadDim int
}

// AttnSpec sizes an attention layer for NewAttention.
type AttnSpec struct {
	Dim, KVDim int // query-side and key/value-side input widths (KVDim 0 = Dim)
	Heads      int
	KVHeads    int // 0 = Heads
	HeadDim    int // 0 = Dim/Heads
	QKVBias    bool
	OutBias    bool
}

func (s AttnSpec) norm() AttnSpec {
	if s.KVDim == 0 {
		s.KVDim = s.Dim
	}
	if s.KVHeads == 0 {
		s.KVHeads = s.Heads
	}
	if s.HeadDim == 0 && s.Heads > 0 {
		s.HeadDim = s.Dim / s.Heads
	}
	return s
}

// NewAttention adds the projections of s: q [Heads·HeadDim, Dim], k and v
// [KVHeads·HeadDim, KVDim], o [Dim, Heads·HeadDim].
func NewAttention(p *Params, rng *rand.Rand, names [4]string, s AttnSpec) MHA {
	s = s.norm()
	qd, kvd := s.Heads*s.HeadDim, s.KVHeads*s.HeadDim
	return MHA{
		Q:       NewLinear(p, rng, names[0], s.Dim, qd, s.QKVBias),
		K:       NewLinear(p, rng, names[1], s.KVDim, kvd, s.QKVBias),
		V:       NewLinear(p, rng, names[2], s.KVDim, kvd, s.QKVBias),
		O:       NewLinear(p, rng, names[3], qd, s.Dim, s.OutBias),
		Heads:   s.Heads,
		KVHeads: s.KVHeads,
		HeadDim: s.HeadDim,
	}
}

// AttentionParams counts the parameters of NewAttention.
func AttentionParams(s AttnSpec) int {
	s = s.norm()
	qd, kvd := s.Heads*s.HeadDim, s.KVHeads*s.HeadDim
	return LinearParams(s.Dim, qd, s.QKVBias) + 2*LinearParams(s.KVDim, kvd, s.QKVBias) + LinearParams(qd, s.Dim, s.OutBias)
}

// RepeatKV expands x [B, S, KVHeads, D] to [B, S, KVHeads·rep, D] by
// repeating each head rep times in place (head j becomes heads
// j·rep … j·rep+rep−1), Hugging Face's repeat_kv. It is an IndexSelect, so
// the backward sums the gradients of the copies.
func RepeatKV(tp *kernels.Tape, x *kernels.Tensor, rep int) *kernels.Tensor {
	if rep == 1 {
		return x
	}
	kv := x.Shape[2]
	idx := make([]int32, kv*rep)
	for i := range idx {
		idx[i] = int32(i / rep)
	}
	return tp.IndexSelect(x, 2, idx)
}

// NewMHA adds name.{q,k,v,o}Name projections: q from dim, k and v from
// kvDim (cross-attention reads another width), all to dim.
func NewMHA(p *Params, rng *rand.Rand, names [4]string, dim, kvDim, heads int, qkvBias, outBias bool) MHA {
	return MHA{
		Q:     NewLinear(p, rng, names[0], dim, dim, qkvBias),
		K:     NewLinear(p, rng, names[1], kvDim, dim, qkvBias),
		V:     NewLinear(p, rng, names[2], kvDim, dim, qkvBias),
		O:     NewLinear(p, rng, names[3], dim, dim, outBias),
		Heads: heads,
	}
}

// MHAParams counts the parameters of NewMHA.
func MHAParams(dim, kvDim int, qkvBias, outBias bool) int {
	return LinearParams(dim, dim, qkvBias) + 2*LinearParams(kvDim, dim, qkvBias) + LinearParams(dim, dim, outBias)
}

// Forward attends from xq [B, Sq, dim] to xkv [B, Sk, kvDim] (nil for
// self-attention) with kernels.Attention's blockwise kernel and masks, and
// applies the output projection. rope, when non-nil, rotates q and k.
func (a MHA) Forward(tp *kernels.Tape, xq, xkv *kernels.Tensor, opt kernels.AttnOptions, rope *kernels.RoPEConfig) *kernels.Tensor {
	if xkv == nil {
		xkv = xq
	}
	return a.ForwardQKV(tp, xq, xkv, xkv, opt, rope)
}

// ForwardQKV is Forward with different inputs for keys and values (Qwen-VL's
// adapter adds positions to the keys but not to the values).
func (a MHA) ForwardQKV(tp *kernels.Tape, xq, xk, xv *kernels.Tensor, opt kernels.AttnOptions, rope *kernels.RoPEConfig) *kernels.Tensor {
	b, sq, dim := xq.Shape[0], xq.Shape[1], xq.Shape[2]
	sk := xk.Shape[1]
	hd := a.HeadDim
	if hd == 0 {
		hd = dim / a.Heads
	}
	kvh := a.KVHeads
	if kvh == 0 {
		kvh = a.Heads
	}
	q := tp.Reshape(a.Q.Forward(tp, xq), b, sq, a.Heads, hd)
	k := tp.Reshape(a.K.Forward(tp, xk), b, sk, kvh, hd)
	v := tp.Reshape(a.V.Forward(tp, xv), b, sk, kvh, hd)
	if rope != nil {
		q = tp.RoPE(q, *rope)
		k = tp.RoPE(k, *rope)
	}
	if kvh != a.Heads {
		k, v = RepeatKV(tp, k, a.Heads/kvh), RepeatKV(tp, v, a.Heads/kvh)
	}
	o := tp.Attention(q, k, v, opt)
	return a.O.Forward(tp, tp.Reshape(o, b, sq, a.Heads*hd))
}

// QuickGELU is CLIP's x·σ(1.702x) (openai/CLIP model.py QuickGELU),
// composed from kernels ops.
func QuickGELU(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	return tp.Mul(x, tp.Sigmoid(tp.Scale(x, 1.702)))
}

// Act names an MLP activation.
type Act string

// The activations of the encoders: exact GELU (BERT, EVA, OpenCLIP),
// CLIP's quick GELU, and the tanh approximation.
const (
	ActGELU      Act = "gelu"
	ActQuickGELU Act = "quick_gelu"
	ActGELUTanh  Act = "gelu_tanh"
)

// Apply applies the activation.
func (a Act) Apply(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	switch a {
	case ActQuickGELU:
		return QuickGELU(tp, x)
	case ActGELUTanh:
		return tp.GELU(x)
	}
	return tp.GELUErf(x)
}
