package models

import (
	"fmt"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/llm"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/vit"
)

// llava is LLaVA-1.5 (Liu et al. 2023, arXiv 2310.03744; haotian-liu/LLaVA
// c121f04 llava_arch.py, multimodal_projector/builder.py) and VILA (Lin et
// al. 2024, CVPR; NVlabs/VILA): the ViT's penultimate-layer patch features
// go through a projector and replace each <image> placeholder of the LLM
// input, in order, so interleaved documents keep several images where they
// were.
//
// Parameters: vit.* (frozen at construction: "requires_grad_(False)" in
// clip_encoder.py; VILA keeps it frozen in every v1 stage), mm_projector.*,
// llm.*. Projectors: linear (mm_projector.weight/bias; VILA paper §3.1),
// mlp2x_gelu (mm_projector.0 → GELU → mm_projector.2; LLaVA-1.5) and
// mlp_downsample (2×2 neighbour concat → mm_projector.0 LayerNorm(4W) →
// .1 Linear → GELU → .3 Linear; VILA-1.5 base_projector.py).
//
// Forward reads Images and Tokens (with Special.Image placeholders, one per
// image, in image order); Loss and Segments are optional. Terms: lm.
type llava struct {
	cfg    Config
	params *nn.Params
	vit    *vit.ViT
	ln     *nn.LayerNorm
	fc1    nn.Linear
	fc2    *nn.Linear
	llm    *llm.Model
}

func newLLaVA(cfg Config, seed uint64) (*llava, error) {
	m := &llava{cfg: cfg, params: nn.NewParams()}
	rng := nn.Rng(seed)
	var err error
	if m.vit, err = vit.New(m.params, rng, "vit", cfg.ViT); err != nil {
		return nil, err
	}
	w, d := cfg.ViT.Width, cfg.LLM.Hidden
	switch cfg.Projector {
	case ProjLinear:
		m.fc1 = nn.NewLinear(m.params, rng, "mm_projector", w, d, true)
	case ProjMLP2xGELU:
		m.fc1 = nn.NewLinear(m.params, rng, "mm_projector.0", w, d, true)
		l := nn.NewLinear(m.params, rng, "mm_projector.2", d, d, true)
		m.fc2 = &l
	case ProjMLPDownsample:
		ln := nn.NewLayerNorm(m.params, "mm_projector.0", 4*w, 1e-5)
		m.ln = &ln
		m.fc1 = nn.NewLinear(m.params, rng, "mm_projector.1", 4*w, d, true)
		l := nn.NewLinear(m.params, rng, "mm_projector.3", d, d, true)
		m.fc2 = &l
	}
	if m.llm, err = llm.New(m.params, rng, "llm.", cfg.LLM); err != nil {
		return nil, err
	}
	if _, err := m.params.Freeze("vit.*"); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *llava) Config() Config     { return m.cfg }
func (m *llava) Params() *nn.Params { return m.params }

// TokensPerImage is the number of LLM positions one image takes.
func (c Config) TokensPerImage() int {
	switch c.Family {
	case QwenVL:
		return c.Queries
	case BLIP2, InstructBLIP:
		return c.QFormer.Queries
	}
	g := c.ImageSize / c.ViT.PatchSize
	if c.Projector == ProjMLPDownsample {
		return g * g / 4
	}
	return g * g
}

// downsample2x2 concatenates each 2×2 block of neighbouring patch features
// with the reshapes of VILA's DownSampleBlock.flat_square: x [N, h·w, C] →
// [N, h/2·w/2, 4C].
func downsample2x2(tp *kernels.Tape, x *kernels.Tensor, h, w int) *kernels.Tensor {
	n, c := x.Shape[0], x.Shape[2]
	y := tp.Reshape(x, n, h, w/2, 2*c)
	y = tp.Permute(y, 0, 2, 1, 3) // [n, w/2, h, 2c]
	y = tp.Reshape(y, n, w/2, h/2, 4*c)
	y = tp.Permute(y, 0, 2, 1, 3) // [n, h/2, w/2, 4c]
	return tp.Reshape(y, n, h/2*(w/2), 4*c)
}

// project maps images [N, C, H, W] to LLM inputs [N, TokensPerImage, D].
func (m *llava) project(tp *kernels.Tape, images *kernels.Tensor) *kernels.Tensor {
	x := m.vit.Forward(tp, images, vit.PenultimatePatches)
	if m.ln != nil {
		g := images.Shape[2] / m.cfg.ViT.PatchSize
		x = m.ln.Forward(tp, downsample2x2(tp, x, g, images.Shape[3]/m.cfg.ViT.PatchSize))
	}
	x = m.fc1.Forward(tp, x)
	if m.fc2 != nil {
		x = m.fc2.Forward(tp, tp.GELUErf(x))
	}
	return x
}

func (m *llava) Forward(tp *kernels.Tape, b *Batch) (Output, error) {
	if err := b.checkRows(); err != nil {
		return Output{}, err
	}
	if err := checkIDs("tokens", b.Tokens, m.cfg.LLM.Vocab); err != nil {
		return Output{}, err
	}
	if err := checkImages(b.Images, m.cfg); err != nil {
		return Output{}, err
	}
	k := m.cfg.TokensPerImage()
	rows := make([][]piece, len(b.Tokens))
	img := 0
	for r, toks := range b.Tokens {
		for t, id := range toks {
			seg := b.segment(r, t)
			if id == m.cfg.Special.Image {
				// prepare_inputs_labels_for_multimodal: the placeholder is
				// replaced in place by the image's features, labels IGNORE.
				for j := 0; j < k; j++ {
					rows[r] = append(rows[r], piece{feat: img*k + j, seg: seg})
				}
				img++
				continue
			}
			rows[r] = append(rows[r], piece{tok: id, feat: -1, loss: b.tokensLoss(r, t), seg: seg})
		}
	}
	nImg := 0
	if b.Images != nil {
		nImg = b.Images.Shape[0]
	}
	if img != nImg {
		return Output{}, fmt.Errorf("batch: images: %d images for %d <image> placeholders", nImg, img)
	}
	var feats *kernels.Tensor
	if nImg > 0 {
		feats = tp.Reshape(m.project(tp, b.Images), nImg*k, m.cfg.LLM.Hidden)
	}
	return runLM(tp, m.cfg, m.llm, rows, nImg*k, feats)
}
