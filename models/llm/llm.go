package llm

import (
	"fmt"
	"math/rand/v2"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
)

// Decoder kinds (Config.Kind).
const (
	KindLlama = "llama" // LLaMA / Mistral / Qwen2 (the default)
	KindOPT   = "opt"   // OPT (BLIP-2's decoder)
)

// Config sizes the decoder.
type Config struct {
	// Kind selects the architecture: "" or KindLlama (RMSNorm, RoPE,
	// SwiGLU), or KindOPT (LayerNorm, learned positions, ReLU FFN).
	Kind    string
	Vocab   int     // text vocabulary (embedding rows and head outputs)
	Hidden  int     // model width
	Layers  int     // decoder blocks
	Heads   int     // attention (query) heads
	FFN     int     // SwiGLU inner width (OPT: ffn_dim)
	Theta   float64 // RoPE base (LLaMA 10000; LWM raises it to 1e6…5e7)
	Eps     float32 // RMSNorm epsilon (OPT: LayerNorm epsilon, default 1e-5)
	QKVBias bool    // biases on q/k/v (Qwen)
	Tied    bool    // output head shares the embedding matrix

	// KVHeads is the number of key/value heads (grouped-query attention;
	// num_key_value_heads): query head h reads KV head h/(Heads/KVHeads).
	// 0 means Heads.
	KVHeads int
	// HeadDim is the per-head width (head_dim) when Heads·HeadDim is not
	// Hidden; 0 means Hidden/Heads.
	HeadDim int
	// AttnBias puts biases on all four attention projections, o_proj
	// included (LLaMA attention_bias); QKVBias only on q/k/v (Qwen2).
	AttnBias bool
	// MLPBias puts biases on gate/up/down (LLaMA mlp_bias).
	MLPBias bool
	// RoPE scales the rotary frequencies (config.json rope_scaling);
	// the zero value is plain RoPE.
	RoPE RoPEScaling
	// MaxPos is max_position_embeddings: the length dynamic and yarn
	// scaling are relative to, and OPT's learned position table
	// (MaxPos+2 rows).
	MaxPos int

	// EmbedDim (OPT word_embed_proj_dim) is the width of the token
	// embedding and the head when it differs from Hidden (opt-350m):
	// project_in and project_out map between them. 0 means Hidden.
	EmbedDim int
	// PostLN (OPT do_layer_norm_before false, opt-350m) normalises after
	// each residual instead of before, and has no final LayerNorm.
	PostLN bool

	// Recompute runs each decoder block under activation checkpointing
	// (kernels.Tape.Recompute): its activations are recomputed in the
	// backward pass instead of kept, one more forward pass of the blocks
	// for a peak of one block's activations. Same gradients bit for bit.
	// How to run, not what the model is: not written to config files.
	Recompute bool `json:"-"`
}

func (c Config) kind() string {
	if c.Kind == "" {
		return KindLlama
	}
	return c.Kind
}

func (c Config) headDim() int {
	if c.HeadDim > 0 {
		return c.HeadDim
	}
	if c.Heads > 0 {
		return c.Hidden / c.Heads
	}
	return 0
}

func (c Config) kvHeads() int {
	if c.KVHeads > 0 {
		return c.KVHeads
	}
	return c.Heads
}

func (c Config) embedDim() int {
	if c.EmbedDim > 0 {
		return c.EmbedDim
	}
	return c.Hidden
}

// Validate names the first inconsistent field.
func (c Config) Validate() error {
	switch {
	case c.kind() != KindLlama && c.kind() != KindOPT:
		return fmt.Errorf("llm: kind %q: want %q or %q", c.Kind, KindLlama, KindOPT)
	case c.Vocab <= 0 || c.Hidden <= 0 || c.Layers <= 0 || c.FFN <= 0:
		return fmt.Errorf("llm: vocab, hidden, layers and ffn must be positive (got %d, %d, %d, %d)", c.Vocab, c.Hidden, c.Layers, c.FFN)
	case c.Heads <= 0 || c.HeadDim < 0 || (c.HeadDim == 0 && c.Hidden%c.Heads != 0):
		return fmt.Errorf("llm: hidden %d must split into %d heads", c.Hidden, c.Heads)
	case c.KVHeads < 0 || c.Heads%c.kvHeads() != 0:
		return fmt.Errorf("llm: %d heads must be a multiple of %d kv heads", c.Heads, c.KVHeads)
	case c.EmbedDim < 0 || c.MaxPos < 0:
		return fmt.Errorf("llm: embed dim %d and max positions %d must not be negative", c.EmbedDim, c.MaxPos)
	}
	if c.kind() == KindOPT {
		switch {
		case c.MaxPos <= 0:
			return fmt.Errorf("llm: OPT needs max positions (max_position_embeddings) for its learned position table")
		case c.HeadDim != 0 && c.HeadDim*c.Heads != c.Hidden, c.KVHeads != 0 && c.KVHeads != c.Heads:
			return fmt.Errorf("llm: OPT has %d heads of hidden/heads and no grouped-query attention", c.Heads)
		}
		return nil
	}
	switch {
	case c.headDim()%2 != 0:
		return fmt.Errorf("llm: head dim %d must be even (RoPE)", c.headDim())
	case c.EmbedDim != 0 && c.EmbedDim != c.Hidden, c.PostLN:
		return fmt.Errorf("llm: embed dim and post-LN are OPT options")
	}
	return c.RoPE.validate(c)
}

func (c Config) attnSpec() nn.AttnSpec {
	return nn.AttnSpec{Dim: c.Hidden, Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim,
		QKVBias: c.QKVBias || c.AttnBias, OutBias: c.AttnBias}
}

// ParamCount counts the parameters New creates, without allocating.
func ParamCount(c Config) int {
	if c.kind() == KindOPT {
		return optParamCount(c)
	}
	h := c.Hidden
	block := 2*h + nn.AttentionParams(c.attnSpec()) + 2*nn.LinearParams(h, c.FFN, c.MLPBias) + nn.LinearParams(c.FFN, h, c.MLPBias)
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
	Embed  *kernels.Tensor // [Vocab, Hidden] (OPT: [Vocab, EmbedDim])
	Head   *kernels.Tensor // [Vocab, Hidden]; == Embed when tied
	blocks []block
	norm   nn.RMSNorm
	inv    []float32 // RoPE inverse frequencies (all but dynamic beyond MaxPos)
	scale  float32   // RoPE attention factor
	opt    *optDecoder
}

// New adds the decoder's parameters under prefix (e.g. "llm.", or "" for
// a bare LM), named as Hugging Face does: LLaMA prefix+"model.*" and,
// untied, prefix+"lm_head.weight"; OPT prefix+"model.decoder.*" and,
// untied, prefix+"lm_head.weight".
func New(p *nn.Params, rng *rand.Rand, prefix string, c Config) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.kind() == KindOPT {
		return newOPT(p, rng, prefix, c)
	}
	if c.Eps == 0 {
		c.Eps = 1e-6
	}
	if c.Theta == 0 {
		c.Theta = 10000
	}
	m := &Model{Cfg: c}
	m.inv, m.scale = c.RoPE.InvFreq(c.Theta, c.headDim(), c.MaxPos, 0)
	h := c.Hidden
	m.Embed = p.Add(prefix+"model.embed_tokens.weight", c.Vocab, h).InitNormal(rng, nn.InitStd)
	for i := 0; i < c.Layers; i++ {
		n := fmt.Sprintf("%smodel.layers.%d.", prefix, i)
		m.blocks = append(m.blocks, block{
			inNorm:   nn.NewRMSNorm(p, n+"input_layernorm", h, c.Eps),
			attn:     nn.NewAttention(p, rng, [4]string{n + "self_attn.q_proj", n + "self_attn.k_proj", n + "self_attn.v_proj", n + "self_attn.o_proj"}, c.attnSpec()),
			postNorm: nn.NewRMSNorm(p, n+"post_attention_layernorm", h, c.Eps),
			gate:     nn.NewLinear(p, rng, n+"mlp.gate_proj", h, c.FFN, c.MLPBias),
			up:       nn.NewLinear(p, rng, n+"mlp.up_proj", h, c.FFN, c.MLPBias),
			down:     nn.NewLinear(p, rng, n+"mlp.down_proj", c.FFN, h, c.MLPBias),
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

// EmbedTokens looks up ids (B·T of them, row-major) and returns
// [B, T, Hidden] (OPT: [B, T, EmbedDim], what Forward takes).
func (m *Model) EmbedTokens(tp *kernels.Tape, ids []int32, b, t int) *kernels.Tensor {
	return tp.Reshape(tp.Embedding(m.Embed, ids), b, t, m.Embed.Shape[1])
}

// Layout describes the rows of a batch for attention: causal within each
// segment, positions restarting per segment.
type Layout struct {
	// Pos holds B·T position ids (RoPE; OPT's learned positions, looked
	// up at Pos+2); nil means 0..T-1 in every row.
	Pos []int32
	// Seg holds B·T segment ids for packed rows; nil means one segment per
	// row. Tokens of different segments never attend to each other.
	Seg []int32
	// KeyLens, one per row, hides right padding: tokens at or after
	// KeyLens[b] are never attended to. nil means no padding.
	KeyLens []int
}

// positions returns the B·T position ids and the attention options of lay.
func (lay Layout) resolve(b, t int) ([]int32, kernels.AttnOptions) {
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
	return pos, opt
}

// Forward runs the blocks over input embeddings x [B, T, Hidden] (text
// embeddings with visual tokens already spliced in; OPT: [B, T, EmbedDim])
// and returns the final normalised hidden states [B, T, Hidden] (OPT:
// after project_out, [B, T, EmbedDim]).
func (m *Model) Forward(tp *kernels.Tape, x *kernels.Tensor, lay Layout) *kernels.Tensor {
	b, t := x.Shape[0], x.Shape[1]
	pos, opt := lay.resolve(b, t)
	if m.opt != nil {
		return m.opt.forward(tp, m, x, pos, opt)
	}
	rope := &kernels.RoPEConfig{Pos: pos, InvFreq: m.inv, AttnScale: m.scale}
	if m.Cfg.RoPE.dynamic() {
		maxPos := int32(0)
		for _, p := range pos {
			maxPos = max(maxPos, p)
		}
		rope.InvFreq, rope.AttnScale = m.Cfg.RoPE.InvFreq(m.Cfg.Theta, m.Cfg.headDim(), m.Cfg.MaxPos, int(maxPos)+1)
	}
	for _, blk := range m.blocks {
		f := func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
			x = tp.Add(x, blk.attn.Forward(tp, blk.inNorm.Forward(tp, x), nil, opt, rope))
			h := blk.postNorm.Forward(tp, x)
			return tp.Add(x, blk.down.Forward(tp, tp.SwiGLU(blk.gate.Forward(tp, h), blk.up.Forward(tp, h))))
		}
		if m.Cfg.Recompute {
			x = tp.Recompute(x, f)
		} else {
			x = f(tp, x)
		}
	}
	return m.norm.Forward(tp, x)
}

// Logits applies the output head to hidden states [..., Hidden].
func (m *Model) Logits(tp *kernels.Tape, h *kernels.Tensor) *kernels.Tensor {
	return tp.Linear(h, m.Head, nil)
}
