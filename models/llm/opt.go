package llm

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
)

// OPT (Zhang et al. 2022, "OPT: Open Pre-trained Transformer Language
// Models"; Hugging Face OPTForCausalLM, BLIP-2's decoder): token embedding
// [Vocab, EmbedDim], project_in to Hidden when EmbedDim ≠ Hidden, learned
// positions looked up at position+2 (the fairseq padding offset), blocks of
// LayerNorm → attention (q/k/v/out_proj with biases, q pre-scaled by
// d^-½) → residual and LayerNorm → fc1 → ReLU → fc2 → residual
// (normalisation before each sub-layer, or after each residual with
// PostLN), a final LayerNorm (pre-LN only), project_out, and a head
// [Vocab, EmbedDim] tied to the embedding unless Tied is false.

type optBlock struct {
	attnNorm, ffnNorm nn.LayerNorm
	attn              nn.MHA
	fc1, fc2          nn.Linear
}

type optDecoder struct {
	pos             *kernels.Tensor // [MaxPos+2, Hidden]
	projIn, projOut *nn.Linear      // nil when EmbedDim == Hidden
	blocks          []optBlock
	final           *nn.LayerNorm // nil with PostLN
	headDim, maxPos int
	prescale        float32
}

// optPosOffset is OPTLearnedPositionalEmbedding's offset.
const optPosOffset = 2

func optParamCount(c Config) int {
	h, p := c.Hidden, c.embedDim()
	n := c.Vocab*p + (c.MaxPos+optPosOffset)*h
	if p != h {
		n += 2 * p * h
	}
	block := 4*h + nn.AttentionParams(nn.AttnSpec{Dim: h, Heads: c.Heads, QKVBias: true, OutBias: true}) +
		nn.LinearParams(h, c.FFN, true) + nn.LinearParams(c.FFN, h, true)
	n += c.Layers * block
	if !c.PostLN {
		n += 2 * h
	}
	if !c.Tied {
		n += c.Vocab * p
	}
	return n
}

func newOPT(p *nn.Params, rng *rand.Rand, prefix string, c Config) (*Model, error) {
	if c.Eps == 0 {
		c.Eps = 1e-5
	}
	h, pd := c.Hidden, c.embedDim()
	m := &Model{Cfg: c}
	d := &optDecoder{headDim: h / c.Heads, maxPos: c.MaxPos}
	d.prescale = float32(math.Pow(float64(d.headDim), -0.5))
	n := prefix + "model.decoder."
	m.Embed = p.Add(n+"embed_tokens.weight", c.Vocab, pd).InitNormal(rng, nn.InitStd)
	d.pos = p.Add(n+"embed_positions.weight", c.MaxPos+optPosOffset, h).InitNormal(rng, nn.InitStd)
	if pd != h {
		out := nn.NewLinear(p, rng, n+"project_out", h, pd, false)
		in := nn.NewLinear(p, rng, n+"project_in", pd, h, false)
		d.projIn, d.projOut = &in, &out
	}
	if !c.PostLN {
		ln := nn.NewLayerNorm(p, n+"final_layer_norm", h, c.Eps)
		d.final = &ln
	}
	for i := 0; i < c.Layers; i++ {
		l := fmt.Sprintf("%slayers.%d.", n, i)
		d.blocks = append(d.blocks, optBlock{
			attn: nn.NewAttention(p, rng, [4]string{l + "self_attn.q_proj", l + "self_attn.k_proj", l + "self_attn.v_proj", l + "self_attn.out_proj"},
				nn.AttnSpec{Dim: h, Heads: c.Heads, QKVBias: true, OutBias: true}),
			attnNorm: nn.NewLayerNorm(p, l+"self_attn_layer_norm", h, c.Eps),
			fc1:      nn.NewLinear(p, rng, l+"fc1", h, c.FFN, true),
			fc2:      nn.NewLinear(p, rng, l+"fc2", c.FFN, h, true),
			ffnNorm:  nn.NewLayerNorm(p, l+"final_layer_norm", h, c.Eps),
		})
	}
	if c.Tied {
		m.Head = m.Embed
	} else {
		m.Head = p.Add(prefix+"lm_head.weight", c.Vocab, pd).InitNormal(rng, nn.InitStd)
	}
	m.opt = d
	return m, nil
}

func (d *optDecoder) forward(tp *kernels.Tape, m *Model, x *kernels.Tensor, pos []int32, opt kernels.AttnOptions) *kernels.Tensor {
	b, t := x.Shape[0], x.Shape[1]
	if d.projIn != nil {
		x = d.projIn.Forward(tp, x)
	}
	idx := make([]int32, len(pos))
	for i, p := range pos {
		if p < 0 || int(p) >= d.maxPos {
			panic(fmt.Sprintf("llm: OPT position %d outside the %d learned positions (max_position_embeddings)", p, d.maxPos))
		}
		idx[i] = p + optPosOffset
	}
	x = tp.Add(x, tp.Reshape(tp.Embedding(d.pos, idx), b, t, m.Cfg.Hidden))
	opt.Scale = 1 // q is pre-scaled, as OPTAttention does
	for _, blk := range d.blocks {
		h := x
		if !m.Cfg.PostLN {
			h = blk.attnNorm.Forward(tp, h)
		}
		x = tp.Add(x, d.attention(tp, blk.attn, h, opt))
		if m.Cfg.PostLN {
			x = blk.attnNorm.Forward(tp, x)
		}
		h = x
		if !m.Cfg.PostLN {
			h = blk.ffnNorm.Forward(tp, h)
		}
		x = tp.Add(x, blk.fc2.Forward(tp, tp.ReLU(blk.fc1.Forward(tp, h))))
		if m.Cfg.PostLN {
			x = blk.ffnNorm.Forward(tp, x)
		}
	}
	if d.final != nil {
		x = d.final.Forward(tp, x)
	}
	if d.projOut != nil {
		x = d.projOut.Forward(tp, x)
	}
	return x
}

// attention is OPTAttention: q_proj(x)·d^-½, then softmax(q·kᵀ)·v.
func (d *optDecoder) attention(tp *kernels.Tape, a nn.MHA, x *kernels.Tensor, opt kernels.AttnOptions) *kernels.Tensor {
	b, s, dim := x.Shape[0], x.Shape[1], x.Shape[2]
	q := tp.Reshape(tp.Scale(a.Q.Forward(tp, x), d.prescale), b, s, a.Heads, d.headDim)
	k := tp.Reshape(a.K.Forward(tp, x), b, s, a.Heads, d.headDim)
	v := tp.Reshape(a.V.Forward(tp, x), b, s, a.Heads, d.headDim)
	return a.O.Forward(tp, tp.Reshape(tp.Attention(q, k, v, opt), b, s, dim))
}
