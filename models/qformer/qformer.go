package qformer

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
)

// Config sizes the Q-Former.
type Config struct {
	Hidden       int // 768 (BERT-base)
	Layers       int // 12
	Heads        int // 12
	Intermediate int // 3072
	Vocab        int // BERT vocabulary + [DEC] (30522 + 1)
	MaxPos       int // 512 learned text positions
	Queries      int // 32 learned queries
	CrossFreq    int // a cross-attention layer every CrossFreq layers (2)
	VisionWidth  int // width of the image features (EVA ViT-g 1408)
	EmbedDim     int // ITC projection size (256)
	// TextSide builds the text path: word and position embeddings and the
	// text FFNs (stage 1, InstructBLIP).
	TextSide bool
	// Objectives builds the stage-1 heads: ITC projections, ITM head,
	// temperature and the LM head (needs TextSide).
	Objectives bool
	Eps        float32 // 1e-12 (BERT)
	// Dropout is BERT's hidden_dropout_prob (0.1 in LAVIS), applied after
	// the embeddings and to each sub-layer's output before its residual
	// LayerNorm, when Input.Train is set. Attention-probability dropout is
	// not applied (the blockwise attention kernel has none).
	Dropout float32
}

// Validate names the first inconsistent field.
func (c Config) Validate() error {
	switch {
	case c.Hidden <= 0 || c.Heads <= 0 || c.Hidden%c.Heads != 0:
		return fmt.Errorf("qformer: hidden %d must be a positive multiple of heads %d", c.Hidden, c.Heads)
	case c.Layers <= 0 || c.Intermediate <= 0 || c.Queries <= 0 || c.CrossFreq <= 0 || c.VisionWidth <= 0:
		return fmt.Errorf("qformer: layers, intermediate, queries, cross_freq and vision_width must be positive")
	case c.TextSide && (c.Vocab <= 0 || c.MaxPos <= 0):
		return fmt.Errorf("qformer: the text side needs vocab and max_pos")
	case c.Objectives && (!c.TextSide || c.EmbedDim <= 0):
		return fmt.Errorf("qformer: the stage-1 heads need the text side and embed_dim")
	}
	return nil
}

// HasCross reports whether layer i has a cross-attention.
func (c Config) HasCross(i int) bool { return i%c.CrossFreq == 0 }

func attnBlockParams(h, kv int) int { return nn.MHAParams(h, kv, true, true) + 2*h }
func ffnParams(h, m int) int {
	return nn.LinearParams(h, m, true) + nn.LinearParams(m, h, true) + 2*h
}

// ParamCount counts the parameters New creates, without allocating: the
// queries, the layers, with TextSide the embeddings and text FFNs, with
// Objectives the ITC projections, ITM head, temperature and LM head (its
// decoder weight tied to the word embeddings, its bias counted).
func ParamCount(c Config) int {
	h := c.Hidden
	n := c.Queries*h + 2*h // queries, embeddings LayerNorm
	for i := 0; i < c.Layers; i++ {
		n += attnBlockParams(h, h) + ffnParams(h, c.Intermediate)
		if c.HasCross(i) {
			n += attnBlockParams(h, c.VisionWidth)
		}
		if c.TextSide {
			n += ffnParams(h, c.Intermediate)
		}
	}
	if c.TextSide {
		n += c.Vocab*h + c.MaxPos*h
	}
	if c.Objectives {
		n += 2*nn.LinearParams(h, c.EmbedDim, true) + nn.LinearParams(h, 2, true) + 1
		n += nn.LinearParams(h, h, true) + 2*h + c.Vocab // LM head transform, LayerNorm, decoder bias
	}
	return n
}

// TextSidePatterns are the parameter patterns of the text path, for
// nn.LoadOptions.Skip when a stage-1 checkpoint is loaded into a stage-2
// (query-only) Q-Former, or for Params.Drop.
func TextSidePatterns(prefix string) []string {
	return []string{
		prefix + ".embeddings.word_embeddings.*", prefix + ".embeddings.position_embeddings.*",
		prefix + ".layer.*.intermediate.*", prefix + ".layer.*.output.*",
		prefix + ".vision_proj.*", prefix + ".text_proj.*", prefix + ".itm_head.*", prefix + ".temp",
		prefix + ".cls.*",
	}
}

type sub struct {
	attn nn.MHA
	ln   nn.LayerNorm // output.LayerNorm(x + output.dense(attn))
}

func newSub(p *nn.Params, rng *rand.Rand, n string, h, kv, heads int, eps float32) sub {
	return sub{
		attn: nn.NewMHA(p, rng, [4]string{n + ".query", n + ".key", n + ".value", n + ".output.dense"}, h, kv, heads, true, true),
		ln:   nn.NewLayerNorm(p, n+".output.LayerNorm", h, eps),
	}
}

type ffn struct {
	in, out nn.Linear
	ln      nn.LayerNorm
}

func newFFN(p *nn.Params, rng *rand.Rand, in, out string, h, m int, eps float32) ffn {
	return ffn{
		in:  nn.NewLinear(p, rng, in+".dense", h, m, true),
		out: nn.NewLinear(p, rng, out+".dense", m, h, true),
		ln:  nn.NewLayerNorm(p, out+".LayerNorm", h, eps),
	}
}

// forward is BertIntermediate (dense + exact GELU) then BertOutput
// (LayerNorm(x + dropout(dense(·)))).
func (f ffn) forward(tp *kernels.Tape, x *kernels.Tensor, drop func(*kernels.Tensor) *kernels.Tensor) *kernels.Tensor {
	return f.ln.Forward(tp, tp.Add(x, drop(f.out.Forward(tp, tp.GELUErf(f.in.Forward(tp, x))))))
}

type layer struct {
	self      sub
	cross     *sub
	ffnQuery  ffn
	ffnText   *ffn
	layerName string
}

// QFormer is a built Q-Former.
type QFormer struct {
	Cfg     Config
	Query   *kernels.Tensor // [1, Queries, Hidden]
	word    *kernels.Tensor // [Vocab, Hidden]
	posEmb  *kernels.Tensor // [MaxPos, Hidden]
	embLN   nn.LayerNorm
	layers  []layer
	heads   *Heads
	lmTrans nn.Linear
	lmLN    nn.LayerNorm
	lmBias  *kernels.Tensor
}

// Heads are the stage-1 heads (LAVIS blip2_qformer.py): ITC projections,
// the ITM classifier and the learnable temperature (init 0.07).
type Heads struct {
	VisionProj, TextProj, ITM nn.Linear
	Temp                      *kernels.Tensor
}

// New adds the Q-Former under prefix (e.g. "qformer"): prefix.query_tokens,
// prefix.embeddings.*, prefix.layer.N.{attention,crossattention}.*,
// prefix.layer.N.{intermediate,output}{,_query}.*, and with TextSide the
// heads prefix.{vision_proj,text_proj,itm_head,temp} and prefix.cls.*.
func New(p *nn.Params, rng *rand.Rand, prefix string, c Config) (*QFormer, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Eps == 0 {
		c.Eps = 1e-12
	}
	q := &QFormer{Cfg: c}
	h := c.Hidden
	q.Query = p.Add(prefix+".query_tokens", 1, c.Queries, h).InitNormal(rng, nn.InitStd)
	if c.TextSide {
		q.word = p.Add(prefix+".embeddings.word_embeddings.weight", c.Vocab, h).InitNormal(rng, nn.InitStd)
		q.posEmb = p.Add(prefix+".embeddings.position_embeddings.weight", c.MaxPos, h).InitNormal(rng, nn.InitStd)
	}
	q.embLN = nn.NewLayerNorm(p, prefix+".embeddings.LayerNorm", h, c.Eps)
	for i := 0; i < c.Layers; i++ {
		n := fmt.Sprintf("%s.layer.%d", prefix, i)
		l := layer{self: newSub(p, rng, n+".attention", h, h, c.Heads, c.Eps), layerName: n}
		if c.HasCross(i) {
			s := newSub(p, rng, n+".crossattention", h, c.VisionWidth, c.Heads, c.Eps)
			l.cross = &s
		}
		if c.TextSide {
			f := newFFN(p, rng, n+".intermediate", n+".output", h, c.Intermediate, c.Eps)
			l.ffnText = &f
		}
		l.ffnQuery = newFFN(p, rng, n+".intermediate_query", n+".output_query", h, c.Intermediate, c.Eps)
		q.layers = append(q.layers, l)
	}
	// BERT's initializer_range 0.02 is calibrated for bert-base's width
	// 768, where a projection of a LayerNorm'd input has outputs of std
	// 0.02·√768 ≈ 0.55. At a narrower width the same 0.02 makes every
	// attention and FFN sublayer almost silent beside its residual (at
	// width 64, 12x weaker through Q·K and V·O), so the Q-Former at init
	// is nearly the identity on its embeddings: every image's query
	// outputs and every caption's [CLS] output are the same vector
	// (cosine 0.999 and 0.99999 across samples), and ITC sits at ln(batch)
	// for hundreds of steps. So the layers' weights are drawn with std
	// 0.02·√(768/Hidden): bert-base's gain at every width, and exactly
	// BERT's init at 768. Checkpoints (BERT, BLIP-2) replace them anyway.
	if k := math.Sqrt(float64(bertBaseHidden) / float64(h)); h != bertBaseHidden {
		for _, t := range p.Select(prefix + ".layer.*") {
			if len(t.Shape) == 2 {
				for i := range t.Data {
					t.Data[i] *= float32(k)
				}
			}
		}
	}
	if c.Objectives {
		q.heads = &Heads{
			VisionProj: nn.NewLinear(p, rng, prefix+".vision_proj", h, c.EmbedDim, true),
			TextProj:   nn.NewLinear(p, rng, prefix+".text_proj", h, c.EmbedDim, true),
			ITM:        nn.NewLinear(p, rng, prefix+".itm_head", h, 2, true),
			Temp:       p.Add(prefix+".temp", 1).Fill(0.07),
		}
		q.lmTrans = nn.NewLinear(p, rng, prefix+".cls.predictions.transform.dense", h, h, true)
		q.lmLN = nn.NewLayerNorm(p, prefix+".cls.predictions.transform.LayerNorm", h, c.Eps)
		q.lmBias = p.Add(prefix+".cls.predictions.bias", c.Vocab)
	}
	return q, nil
}

// bertBaseHidden is bert-base's width, the one BERT's init is made for.
const bertBaseHidden = 768

// Heads returns the stage-1 heads, or nil without a text side.
func (q *QFormer) Heads() *Heads { return q.heads }

// Input is one Q-Former pass. Any of the parts may be absent: ITC's image
// pass has queries and image features only, its text pass text only, ITM
// and ITG have both.
type Input struct {
	Queries bool            // put the learned queries first
	Image   *kernels.Tensor // [B, Nimg, VisionWidth] image features, or nil (no cross-attention)
	Text    []int32         // B·T token ids, or nil
	B, T    int             // batch and text length
	// TextLens, one per row, are the unpadded text lengths (padding at the
	// end of the text is hidden from attention). nil: no padding.
	TextLens []int
	Mask     MaskKind
	// Train enables dropout, with masks derived from Seed (a pure function
	// of the seed, so a step is reproducible).
	Train bool
	Seed  uint64
	// RowSeeds, when set (one per row), replace Seed: row b's masks are a
	// function of RowSeeds[b], the dropout site and the element's index
	// within the row only, so a row drops the same units whatever batch it
	// is part of and however long the batch's padding (data-parallel and
	// gradient-accumulation equivalence).
	RowSeeds []uint64
}

// MaskKind is the self-attention mask over [queries; text] (arXiv
// 2301.12597 Fig. 2).
type MaskKind int

const (
	// Bidirectional: every position sees every other (ITM; InstructBLIP's
	// queries + instruction; a queries-only or text-only pass).
	Bidirectional MaskKind = iota
	// UniLMMask: queries see queries, text sees queries and earlier text (ITG).
	UniLMMask
	// UnimodalMask: queries and text do not see each other (ITC, if run as
	// one pass).
	UnimodalMask
)

// Forward returns the hidden states of the last layer [B, Nq+T, Hidden].
func (q *QFormer) Forward(tp *kernels.Tape, in Input) *kernels.Tensor {
	c := q.Cfg
	h := c.Hidden
	var parts []*kernels.Tensor
	nq := 0
	if in.Queries {
		nq = c.Queries
		parts = append(parts, tp.Add(kernels.Zeros(in.B, nq, h), q.Query))
	}
	if in.Text != nil {
		if q.word == nil {
			panic("qformer: text input to a Q-Former built without its text side")
		}
		if in.T > c.MaxPos {
			panic(fmt.Sprintf("qformer: text length %d exceeds max_pos %d", in.T, c.MaxPos))
		}
		e := tp.Reshape(tp.Embedding(q.word, in.Text), in.B, in.T, h)
		parts = append(parts, tp.Add(e, tp.Slice(q.posEmb, 0, 0, in.T)))
	}
	x := parts[0]
	if len(parts) == 2 {
		x = tp.Concat(1, parts...)
	}
	x = q.embLN.Forward(tp, x)
	if in.RowSeeds != nil && len(in.RowSeeds) != in.B {
		panic(fmt.Sprintf("qformer: %d row seeds for %d rows", len(in.RowSeeds), in.B))
	}
	drop := func(t *kernels.Tensor, site uint64) *kernels.Tensor {
		if !in.Train || c.Dropout == 0 {
			return t
		}
		if in.RowSeeds != nil {
			return tp.Mul(t, rowMask(t.Shape, in.RowSeeds, site, c.Dropout))
		}
		return tp.Dropout(t, c.Dropout, in.Seed*0x9e3779b97f4a7c15+site)
	}
	x = drop(x, 1)
	n := x.Shape[1]
	opt := kernels.AttnOptions{}
	if in.TextLens != nil {
		opt.KeyLens = make([]int, in.B)
		for b, l := range in.TextLens {
			opt.KeyLens[b] = nq + l
		}
	}
	switch in.Mask {
	case UniLMMask:
		opt.Causal, opt.Prefix = true, nq
	case UnimodalMask:
		seg := make([]int32, n)
		for i := nq; i < n; i++ {
			seg[i] = 1
		}
		opt.Mask = &kernels.AttnMask{QSeg: seg, KSeg: seg}
	}
	for li, l := range q.layers {
		site := uint64(li+1) * 16
		a := drop(l.self.attn.Forward(tp, x, nil, opt, nil), site)
		x = l.self.ln.Forward(tp, tp.Add(x, a))
		// Cross-attention and the query FFN act on the query positions,
		// the text FFN on the text positions (LAVIS BertLayer.forward).
		var xq, xt *kernels.Tensor
		if nq > 0 {
			xq = x
			if n > nq {
				xq = tp.Slice(x, 1, 0, nq)
			}
			if l.cross != nil && in.Image != nil {
				ca := drop(l.cross.attn.Forward(tp, xq, in.Image, kernels.AttnOptions{}, nil), site+1)
				xq = l.cross.ln.Forward(tp, tp.Add(xq, ca))
			}
			xq = l.ffnQuery.forward(tp, xq, func(t *kernels.Tensor) *kernels.Tensor { return drop(t, site+2) })
		}
		if n > nq {
			xt = x
			if nq > 0 {
				xt = tp.Slice(x, 1, nq, n)
			}
			xt = l.ffnText.forward(tp, xt, func(t *kernels.Tensor) *kernels.Tensor { return drop(t, site+3) })
		}
		switch {
		case xq != nil && xt != nil:
			x = tp.Concat(1, xq, xt)
		case xq != nil:
			x = xq
		default:
			x = xt
		}
	}
	return x
}

// LMLogits applies BERT's LM head (dense → GELU → LayerNorm → tied decoder
// + bias) to hidden states [..., Hidden].
func (q *QFormer) LMLogits(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	x = q.lmLN.Forward(tp, tp.GELUErf(q.lmTrans.Forward(tp, x)))
	return tp.Linear(x, q.word, q.lmBias)
}

// rowMask is the dropout mask of a tensor [B, …] whose row b is seeded by
// seeds[b]: 0 or 1/(1−p) per element, a function of (seeds[b], site, the
// element's index within the row). Multiplying by it is kernels.Dropout's
// arithmetic.
func rowMask(shape []int, seeds []uint64, site uint64, p float32) *kernels.Tensor {
	mask := kernels.Zeros(shape...)
	per := mask.Size() / shape[0]
	scale := 1 / (1 - p)
	for b, seed := range seeds {
		s := splitmix64(seed ^ splitmix64(site))
		row := mask.Data[b*per : (b+1)*per]
		for i := range row {
			if u := float32(splitmix64(s^splitmix64(uint64(i)))>>40) / (1 << 24); u >= p {
				row[i] = scale
			}
		}
	}
	return mask
}

// splitmix64 is a counter-based hash (Steele et al. 2014), the same
// kernels.Dropout uses.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
