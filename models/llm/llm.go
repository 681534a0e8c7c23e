package llm

import (
	"fmt"
	"math/rand/v2"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
)

// Config sizes the decoder.
type Config struct {
	Vocab   int     // text vocabulary (embedding rows and head outputs)
	Hidden  int     // model width
	Layers  int     // decoder blocks
	Heads   int     // attention heads (no grouped-query attention)
	FFN     int     // SwiGLU inner width
	Theta   float64 // RoPE base (LLaMA 10000; LWM raises it to 1e6…5e7)
	Eps     float32 // RMSNorm epsilon
	QKVBias bool    // biases on q/k/v (Qwen)
	Tied    bool    // output head shares the embedding matrix
}

// Validate names the first inconsistent field.
func (c Config) Validate() error {
	switch {
	case c.Vocab <= 0 || c.Hidden <= 0 || c.Layers <= 0 || c.FFN <= 0:
		return fmt.Errorf("llm: vocab, hidden, layers and ffn must be positive (got %d, %d, %d, %d)", c.Vocab, c.Hidden, c.Layers, c.FFN)
	case c.Heads <= 0 || c.Hidden%c.Heads != 0 || (c.Hidden/c.Heads)%2 != 0:
		return fmt.Errorf("llm: hidden %d must split into %d heads of even size", c.Hidden, c.Heads)
	}
	return nil
}

// ParamCount counts the parameters New creates, without allocating.
func ParamCount(c Config) int {
	h := c.Hidden
	block := 2*h + nn.MHAParams(h, h, c.QKVBias, false) + 3*h*c.FFN
	n := c.Vocab*h + c.Layers*block + h
	if !c.Tied {
		n += c.Vocab * h
	}
	return n
}

type block struct {
	inNorm, postNorm nn.RMSNorm
	attn             nn.MHA
	gate, up, down   nn.Linear
}

// Model is a built decoder.
type Model struct {
	Cfg    Config
	Embed  *kernels.Tensor // [Vocab, Hidden]
	Head   *kernels.Tensor // [Vocab, Hidden]; == Embed when tied
	blocks []block
	norm   nn.RMSNorm
}

// New adds the decoder's parameters: prefix+"model.*" and, untied,
// prefix+"lm_head.weight". prefix is e.g. "llm." (or "" for a bare LM).
func New(p *nn.Params, rng *rand.Rand, prefix string, c Config) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Eps == 0 {
		c.Eps = 1e-6
	}
	if c.Theta == 0 {
		c.Theta = 10000
	}
	m := &Model{Cfg: c}
	h := c.Hidden
	m.Embed = p.Add(prefix+"model.embed_tokens.weight", c.Vocab, h).InitNormal(rng, nn.InitStd)
	for i := 0; i < c.Layers; i++ {
		n := fmt.Sprintf("%smodel.layers.%d.", prefix, i)
		m.blocks = append(m.blocks, block{
			inNorm:   nn.NewRMSNorm(p, n+"input_layernorm", h, c.Eps),
			attn:     nn.NewMHA(p, rng, [4]string{n + "self_attn.q_proj", n + "self_attn.k_proj", n + "self_attn.v_proj", n + "self_attn.o_proj"}, h, h, c.Heads, c.QKVBias, false),
			postNorm: nn.NewRMSNorm(p, n+"post_attention_layernorm", h, c.Eps),
			gate:     nn.NewLinear(p, rng, n+"mlp.gate_proj", h, c.FFN, false),
			up:       nn.NewLinear(p, rng, n+"mlp.up_proj", h, c.FFN, false),
			down:     nn.NewLinear(p, rng, n+"mlp.down_proj", c.FFN, h, false),
		})
	}
	m.norm = nn.NewRMSNorm(p, prefix+"model.norm", h, c.Eps)
	if c.Tied {
		m.Head = m.Embed
	} else {
		m.Head = p.Add(prefix+"lm_head.weight", c.Vocab, h).InitNormal(rng, nn.InitStd)
	}
	return m, nil
}

// EmbedTokens looks up ids (B·T of them, row-major) and returns [B, T, Hidden].
func (m *Model) EmbedTokens(tp *kernels.Tape, ids []int32, b, t int) *kernels.Tensor {
	return tp.Reshape(tp.Embedding(m.Embed, ids), b, t, m.Cfg.Hidden)
}

// Layout describes the rows of a batch for attention: causal within each
// segment, positions restarting per segment.
type Layout struct {
	// Pos holds B·T position ids (RoPE); nil means 0..T-1 in every row.
	Pos []int32
	// Seg holds B·T segment ids for packed rows; nil means one segment per
	// row. Tokens of different segments never attend to each other.
	Seg []int32
	// KeyLens, one per row, hides right padding: tokens at or after
	// KeyLens[b] are never attended to. nil means no padding.
	KeyLens []int
}

// Forward runs the blocks over input embeddings x [B, T, Hidden] (text
// embeddings with visual tokens already spliced in) and returns the final
// normalised hidden states [B, T, Hidden].
func (m *Model) Forward(tp *kernels.Tape, x *kernels.Tensor, lay Layout) *kernels.Tensor {
	b, t := x.Shape[0], x.Shape[1]
	pos := lay.Pos
	if pos == nil {
		pos = make([]int32, b*t)
		for i := range pos {
			pos[i] = int32(i % t)
		}
	}
	if len(pos) != b*t || (lay.Seg != nil && len(lay.Seg) != b*t) {
		panic(fmt.Sprintf("llm: layout has %d positions and %d segment ids for %d×%d tokens", len(pos), len(lay.Seg), b, t))
	}
	// The causal test uses a per-row index (not the restarting RoPE
	// positions), so that packed segments stay causal.
	idx := make([]int32, t)
	for i := range idx {
		idx[i] = int32(i)
	}
	opt := kernels.AttnOptions{Causal: true, KeyLens: lay.KeyLens}
	if lay.Seg != nil {
		opt.Mask = &kernels.AttnMask{Causal: true, QPos: idx, KPos: idx, QSeg: lay.Seg, KSeg: lay.Seg}
	}
	rope := &kernels.RoPEConfig{Theta: m.Cfg.Theta, Pos: pos}
	for _, blk := range m.blocks {
		x = tp.Add(x, blk.attn.Forward(tp, blk.inNorm.Forward(tp, x), nil, opt, rope))
		h := blk.postNorm.Forward(tp, x)
		x = tp.Add(x, blk.down.Forward(tp, tp.SwiGLU(blk.gate.Forward(tp, h), blk.up.Forward(tp, h))))
	}
	return m.norm.Forward(tp, x)
}

// Logits applies the output head to hidden states [..., Hidden].
func (m *Model) Logits(tp *kernels.Tape, h *kernels.Tensor) *kernels.Tensor {
	return tp.Linear(h, m.Head, nil)
}
