package models

import (
	"fmt"
	"math"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/llm"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/vit"
)

// qwenVL is Qwen-VL (Bai et al. 2023, arXiv 2308.12966 §2.1; the visual
// model of HF Qwen/Qwen-VL visual.py as ported in vllm qwen_vl.py and
// layers/resampler.py): a ViT whose last-layer patch tokens go through one
// cross-attention "position-aware vision-language adapter" with learned
// queries into the LLM.
//
// Parameters: visual.* (ViT), visual.attn_pool.* (adapter: query, kv_proj,
// ln_q, ln_kv, attn), visual.ln_post, visual.proj, llm.*. Nothing is frozen
// at construction (the stages differ: LLM frozen in stage 1, everything
// trained in stage 2, ViT frozen in stage 3 — recipes.md §2).
//
// Forward reads Images and Tokens, where every Special.ImgStart must be
// followed by Special.ImgEnd: the adapter's Queries outputs of the next
// image are placed between them (the tokenizer's 256 image-pad slots,
// qwen_vl.py). Loss and Segments are optional. Terms: lm.
type qwenVL struct {
	cfg    Config
	params *nn.Params
	vit    *vit.ViT
	query  *kernels.Tensor // [Nq, D]
	kvProj *nn.Linear
	lnQ    nn.LayerNorm
	lnKV   nn.LayerNorm
	attn   nn.MHA
	lnPost nn.LayerNorm
	proj   *kernels.Tensor // [D, D], used as x·proj
	llm    *llm.Model
}

func newQwenVL(cfg Config, seed uint64) (*qwenVL, error) {
	m := &qwenVL{cfg: cfg, params: nn.NewParams()}
	rng := nn.Rng(seed)
	var err error
	if m.vit, err = vit.New(m.params, rng, "visual", cfg.ViT); err != nil {
		return nil, err
	}
	d := cfg.LLM.Hidden
	// Resampler: queries trunc_normal(std 0.02), kv_proj Linear(W→D,
	// bias=False) when the widths differ, ln_q, ln_kv, MultiheadAttention.
	m.query = m.params.Add("visual.attn_pool.query", cfg.Queries, d).InitNormal(rng, nn.InitStd)
	if cfg.ViT.Width != d {
		l := nn.NewLinear(m.params, rng, "visual.attn_pool.kv_proj", cfg.ViT.Width, d, false)
		m.kvProj = &l
	}
	m.lnQ = nn.NewLayerNorm(m.params, "visual.attn_pool.ln_q", d, 1e-6)
	m.lnKV = nn.NewLayerNorm(m.params, "visual.attn_pool.ln_kv", d, 1e-6)
	n := "visual.attn_pool.attn."
	m.attn = nn.NewMHA(m.params, rng, [4]string{n + "q_proj", n + "k_proj", n + "v_proj", n + "out_proj"}, d, d, cfg.AdapterHeads, true, true)
	m.lnPost = nn.NewLayerNorm(m.params, "visual.ln_post", d, 1e-6)
	// proj = D^-0.5 · randn(D, D) (visual.py VisionTransformer.__init__).
	m.proj = m.params.Add("visual.proj", d, d).InitNormal(rng, float32(1/math.Sqrt(float64(d))))
	if m.llm, err = llm.New(m.params, rng, "llm.", cfg.LLM); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *qwenVL) Config() Config     { return m.cfg }
func (m *qwenVL) Params() *nn.Params { return m.params }

// adapt runs the ViT and the adapter: images [N, C, H, W] → [N, Queries, D].
func (m *qwenVL) adapt(tp *kernels.Tape, images *kernels.Tensor) *kernels.Tensor {
	x := m.vit.Forward(tp, images, vit.LastPatches) // [N, gh·gw, W]
	return m.resample(tp, x, images.Shape[2]/m.cfg.ViT.PatchSize, images.Shape[3]/m.cfg.ViT.PatchSize)
}

// resample is the adapter on ViT features x [N, gh·gw, W]:
// Q = ln_q(query) + pos(G×G); K = ln_kv(kv) + pos interpolated to the
// gh×gw image grid; V = ln_kv(kv), without positions (Resampler.forward,
// adaptive=False); then ln_post and x·proj.
func (m *qwenVL) resample(tp *kernels.Tape, x *kernels.Tensor, gh, gw int) *kernels.Tensor {
	c := m.cfg
	d := c.LLM.Hidden
	if m.kvProj != nil {
		x = m.kvProj.Forward(tp, x)
	}
	kv := m.lnKV.Forward(tp, x)
	g := c.QueryGrid
	pos := nn.SinCos2D(g, g, d)
	posK := pos
	if gh != g || gw != g {
		posK = tp.Matmul(nn.BicubicMatrix(g, g, gh, gw), pos) // get_abs_pos
	}
	n := x.Shape[0]
	q := tp.Add(kernels.Zeros(n, c.Queries, d), tp.Add(m.lnQ.Forward(tp, m.query), pos))
	out := m.attn.ForwardQKV(tp, q, tp.Add(kv, posK), kv, kernels.AttnOptions{}, nil)
	return tp.Matmul(m.lnPost.Forward(tp, out), m.proj)
}

func (m *qwenVL) Forward(tp *kernels.Tape, b *Batch) (Output, error) {
	if err := b.checkRows(); err != nil {
		return Output{}, err
	}
	if err := checkIDs("tokens", b.Tokens, m.cfg.LLM.Vocab); err != nil {
		return Output{}, err
	}
	if err := checkImages(b.Images, m.cfg); err != nil {
		return Output{}, err
	}
	nq := m.cfg.Queries
	s := m.cfg.Special
	rows := make([][]piece, len(b.Tokens))
	img := 0
	for r, toks := range b.Tokens {
		for t, id := range toks {
			seg := b.segment(r, t)
			rows[r] = append(rows[r], piece{tok: id, feat: -1, loss: b.tokensLoss(r, t), seg: seg})
			if id == s.ImgStart {
				if t+1 >= len(toks) || toks[t+1] != s.ImgEnd {
					return Output{}, fmt.Errorf("batch: tokens[%d][%d]: <img> must be followed by </img> (the adapter's %d tokens go between them)", r, t, nq)
				}
				for k := 0; k < nq; k++ {
					rows[r] = append(rows[r], piece{feat: img*nq + k, seg: seg})
				}
				img++
			}
		}
	}
	nImg := 0
	if b.Images != nil {
		nImg = b.Images.Shape[0]
	}
	if img != nImg {
		return Output{}, fmt.Errorf("batch: images: %d images for %d <img></img> pairs", nImg, img)
	}
	var feats *kernels.Tensor
	if nImg > 0 {
		feats = tp.Reshape(m.adapt(tp, b.Images), nImg*nq, m.cfg.LLM.Hidden)
	}
	return runLM(tp, m.cfg, m.llm, rows, nImg*nq, feats)
}

// runLM packs rows, runs the LLM and returns the next-token loss over the
// trained text tokens.
func runLM(tp *kernels.Tape, c Config, lm *llm.Model, rows [][]piece, nFeat int, feats *kernels.Tensor) (Output, error) {
	p, err := pack(rows, nFeat)
	if err != nil {
		return Output{}, fmt.Errorf("batch: %w", err)
	}
	x := p.embed(tp, lm.Embed, nil, feats, lm.Cfg.Hidden)
	h := lm.Forward(tp, x, llm.Layout{Pos: p.pos, Seg: p.layoutSeg(), KeyLens: p.lens})
	loss, n := lmLoss(tp, h, func(x *kernels.Tensor) *kernels.Tensor { return lm.Logits(tp, x) }, p, false, 0)
	if n == 0 {
		return Output{}, fmt.Errorf("batch: loss: no token is trained")
	}
	s := newLossSum(tp, c)
	s.add("lm", loss)
	return s.output()
}
