package kernels

import (
	"fmt"
	"math"
)

// AttnOptions configures Tape.Attention. Masks combine: a pair attends only
// if every configured rule allows it.
type AttnOptions struct {
	// Causal: query i sees key j only if pos(j) <= pos(i). Positions are
	// 0..S−1 unless Mask gives QPos/KPos.
	Causal bool
	// Prefix (with Causal): keys at positions < Prefix are visible to every
	// query, the prefix-LM / UniLM mask (BLIP-2 ITG: 32 queries then text).
	Prefix int
	// KeyLens, one per batch element, masks padded keys: key j of element b
	// is visible only if j < KeyLens[b]. nil: no padding.
	KeyLens []int
	// Mask adds positions and packed-sequence segments. Each of its slices
	// has either S entries (the same for every batch element) or B·S
	// entries (element b uses rows b·S..(b+1)·S).
	Mask *AttnMask
	// Scale multiplies q·kᵀ; 0 means 1/√D.
	Scale float32
}

// maskFor builds the global-terms mask of batch element b (nil = full).
func (o *AttnOptions) maskFor(b, nb, sq, sk int) *AttnMask {
	var m AttnMask
	if o.Mask != nil {
		m = *o.Mask
	}
	pick := func(s []int32, n int) []int32 {
		switch len(s) {
		case 0:
			return nil
		case n:
			return s
		case nb * n:
			return s[b*n : (b+1)*n]
		}
		panic(fmt.Errorf("kernels: Attention: mask slice has %d entries, want %d or %d", len(s), n, nb*n))
	}
	m.QPos, m.KPos = pick(m.QPos, sq), pick(m.KPos, sk)
	m.QSeg, m.KSeg = pick(m.QSeg, sq), pick(m.KSeg, sk)
	if o.Causal {
		m.Causal = true
	}
	if o.Prefix != 0 {
		m.Prefix = int32(o.Prefix)
	}
	if m.Causal {
		if m.QPos == nil {
			m.QPos = posRange32(sq)
		}
		if m.KPos == nil {
			m.KPos = posRange32(sk)
		}
	}
	if o.KeyLens != nil {
		if len(o.KeyLens) != nb {
			panic(fmt.Errorf("kernels: Attention: %d KeyLens for batch %d", len(o.KeyLens), nb))
		}
		ks := make([]int32, sk)
		copy(ks, m.KSeg)
		for j := o.KeyLens[b]; j < sk; j++ {
			ks[j] = math.MinInt32 // a segment no query belongs to
		}
		m.KSeg = ks
	}
	if !m.Causal && m.QSeg == nil && m.KSeg == nil {
		return nil
	}
	return &m
}

func posRange32(n int) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = int32(i)
	}
	return p
}

// Attention is scaled-dot-product attention softmax(scale·q·kᵀ + mask)·v
// for q [B, Sq, H, D] and k, v [B, Sk, H, D] (token-major, heads inside:
// the layout a Linear projection produces after a Reshape). The result is
// [B, Sq, H, D]. It runs blockwise (flash-attention: online softmax over
// 96×192 or 48×64 tiles, backward recomputed from the saved log-sum-exp), so memory
// grows linearly with sequence length. A query with no visible key outputs 0.
func (tp *Tape) Attention(q, k, v *Tensor, opt AttnOptions) *Tensor {
	if len(q.Shape) != 4 || len(k.Shape) != 4 || !sameShape(k.Shape, v.Shape) ||
		q.Shape[0] != k.Shape[0] || q.Shape[2] != k.Shape[2] || q.Shape[3] != k.Shape[3] {
		panic(shapeErr("Attention", q.Shape, k.Shape, "want q [B, Sq, H, D] and k, v [B, Sk, H, D] (v is %v)", v.Shape))
	}
	nb, sq, h, d := q.Shape[0], q.Shape[1], q.Shape[2], q.Shape[3]
	if d == 0 {
		panic(shapeErr("Attention", q.Shape, k.Shape, "head dimension is 0"))
	}
	sk := k.Shape[1]
	scale := opt.Scale
	if scale == 0 {
		scale = float32(1 / math.Sqrt(float64(d)))
	}
	if q.d != nil || k.d != nil || v.d != nil {
		return tp.attentionDev(q, k, v, opt, nb, sq, sk, h, d, scale)
	}
	out := Zeros(q.Shape...)
	lse := make([]float32, nb*sq*h)
	masks := make([]*AttnMask, nb)
	qn, kn := sq*h*d, sk*h*d
	for b := 0; b < nb; b++ {
		masks[b] = opt.maskFor(b, nb, sq, sk)
		AttnBlockForward(q.Data[b*qn:(b+1)*qn], k.Data[b*kn:(b+1)*kn], v.Data[b*kn:(b+1)*kn], sq, sk, h, d, scale, masks[b],
			out.Data[b*qn:(b+1)*qn], lse[b*sq*h:(b+1)*sq*h])
	}
	tp.record("Attention", out, func() {
		delta := make([]float32, sq*h)
		dq, dk, dv := gradOrScratch(q), gradOrScratch(k), gradOrScratch(v)
		for b := 0; b < nb; b++ {
			AttnDelta(out.Data[b*qn:(b+1)*qn], out.Grad[b*qn:(b+1)*qn], sq, h, d, delta)
			AttnBlockBackward(q.Data[b*qn:(b+1)*qn], k.Data[b*kn:(b+1)*kn], v.Data[b*kn:(b+1)*kn], out.Grad[b*qn:(b+1)*qn],
				lse[b*sq*h:(b+1)*sq*h], delta, sq, sk, h, d, scale, masks[b],
				dq[b*qn:(b+1)*qn], dk[b*kn:(b+1)*kn], dv[b*kn:(b+1)*kn])
		}
	}, q, k, v)
	return out
}

// gradOrScratch returns t's gradient buffer, or a throwaway one when t
// needs no gradient (the fused backward always produces all three).
func gradOrScratch(t *Tensor) []float32 {
	if wants(t) {
		return t.gradBuf()
	}
	return make([]float32, t.Size())
}
