package nn

import (
	"fmt"
	"strings"

	"github.com/loomtrain/loom/kernels"
)

// Mask says which keys each query may attend to: Allow[i*K+j] is true when
// query i sees key j. Builders return masks for one sequence; Bias stacks
// one per batch row into the additive form Attend takes.
type Mask struct {
	Q, K  int
	Allow []bool
}

func newMask(q, k int) Mask { return Mask{Q: q, K: k, Allow: make([]bool, q*k)} }

// At reports whether query i sees key j.
func (m Mask) At(i, j int) bool { return m.Allow[i*m.K+j] }

func (m Mask) set(i, j int) { m.Allow[i*m.K+j] = true }

// String prints the mask as rows of 1 (allowed) and 0, as the tests write
// their expected matrices.
func (m Mask) String() string {
	var b strings.Builder
	for i := 0; i < m.Q; i++ {
		for j := 0; j < m.K; j++ {
			if j > 0 {
				b.WriteByte(' ')
			}
			if m.At(i, j) {
				b.WriteByte('1')
			} else {
				b.WriteByte('0')
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Full lets every query see every key (bidirectional: ViT, BERT, BLIP-2's
// ITM over [queries; text], cross-attention).
func Full(q, k int) Mask {
	m := newMask(q, k)
	for i := range m.Allow {
		m.Allow[i] = true
	}
	return m
}

// Causal lets position i see positions 0..i (decoder LMs).
func Causal(n int) Mask {
	m := newMask(n, n)
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			m.set(i, j)
		}
	}
	return m
}

// Prefix is the prefix-LM mask: the first p positions see each other
// bidirectionally and nothing after them; every later position sees the
// whole prefix and the positions up to itself.
func Prefix(n, p int) Mask {
	m := newMask(n, n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if j < p || (i >= p && j <= i) {
				m.set(i, j)
			}
		}
	}
	return m
}

// UniLM is BLIP-2's image-grounded text generation mask over [nq queries;
// nt text tokens] (Li et al. 2023, arXiv 2301.12597 §3.2, Fig. 2 "multimodal
// causal self-attention mask"; LAVIS Qformer.py get_extended_attention_mask
// with has_query): queries see all queries and no text; each text token sees
// all queries and the text up to itself. It is Prefix(nq+nt, nq).
func UniLM(nq, nt int) Mask { return Prefix(nq+nt, nq) }

// Unimodal is BLIP-2's ITC mask over [nq queries; nt text]: queries and text
// do not see each other (arXiv 2301.12597 §3.2, "unimodal self-attention
// mask").
func Unimodal(nq, nt int) Mask {
	n := nq + nt
	m := newMask(n, n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if (i < nq) == (j < nq) {
				m.set(i, j)
			}
		}
	}
	return m
}

// Segment is the causal block-diagonal mask of packed sequences: position i
// sees j ≤ i only when both belong to the same segment (LWM llama.py
// segment_mask combined with the causal mask; recipes.md §5 "masked
// sequence packing").
func Segment(seg []int) Mask {
	m := newMask(len(seg), len(seg))
	for i := range seg {
		for j := 0; j <= i; j++ {
			if seg[i] == seg[j] {
				m.set(i, j)
			}
		}
	}
	return m
}

// Padding hides padded keys: query i sees key j when valid[j]. Queries at
// padded positions still see the valid keys (their outputs are ignored).
func Padding(nq int, valid []bool) Mask {
	m := newMask(nq, len(valid))
	for i := 0; i < nq; i++ {
		for j, v := range valid {
			if v {
				m.set(i, j)
			}
		}
	}
	return m
}

// And returns the mask that allows (i, j) when every mask does.
func And(ms ...Mask) Mask {
	out := Full(ms[0].Q, ms[0].K)
	for _, m := range ms {
		if m.Q != out.Q || m.K != out.K {
			panic(fmt.Sprintf("nn: And of a %dx%d and a %dx%d mask", out.Q, out.K, m.Q, m.K))
		}
		for i, a := range m.Allow {
			out.Allow[i] = out.Allow[i] && a
		}
	}
	return out
}

// MaskedBias is the additive value of a masked entry. It is finite so that
// a row with every key masked gives a uniform (ignored) distribution, not NaN.
const MaskedBias = -1e9

// Bias stacks one mask per batch row into an additive tensor [B, 1, Q, K]
// (0 where allowed, MaskedBias where not) that broadcasts over heads.
func Bias(ms ...Mask) *kernels.Tensor {
	q, k := ms[0].Q, ms[0].K
	t := kernels.Zeros(len(ms), 1, q, k)
	for b, m := range ms {
		if m.Q != q || m.K != k {
			panic(fmt.Sprintf("nn: Bias: mask %d is %dx%d, mask 0 is %dx%d", b, m.Q, m.K, q, k))
		}
		for i, a := range m.Allow {
			if !a {
				t.Data[b*q*k+i] = MaskedBias
			}
		}
	}
	return t
}
