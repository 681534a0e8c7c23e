package models

import (
	"fmt"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/llm"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/vqgan"
)

// lwm is the Large World Model's language model (Liu et al. 2024, arXiv
// 2402.08268; LargeWorldModel/LWM f45d2b7 lwm/vision_llama.py, train.py):
// a LLaMA decoder whose inputs are text ids or vision ids (VQGAN codes and
// <eof>/<eov>), with a separate vision embedding table and vision output
// head; vision_mask routes each position to one of them.
//
// Parameters: llm.* (text embedding llm.model.embed_tokens, head
// llm.lm_head), llm.model.vision_embed_tokens.weight [VisionVocab, H] and
// llm.vision_head.weight [VisionVocab, H]. Nothing frozen.
//
// Forward reads Tokens and Vision (true where the id is a vision id), with
// optional Loss and Segments (masked sequence packing). The loss is
// 0.5·CE_vision + 0.5·CE_text, each averaged over its own trained tokens
// (train.py train_step); a batch with only one modality gives 0.5 times
// that term. Terms: ce_text, ce_vision.
type lwm struct {
	cfg        Config
	params     *nn.Params
	llm        *llm.Model
	vte        *kernels.Tensor
	visionHead *kernels.Tensor
}

func newLWM(cfg Config, seed uint64) (*lwm, error) {
	m := &lwm{cfg: cfg, params: nn.NewParams()}
	rng := nn.Rng(seed)
	var err error
	if m.llm, err = llm.New(m.params, rng, "llm.", cfg.LLM); err != nil {
		return nil, err
	}
	m.vte = m.params.Add("llm.model.vision_embed_tokens.weight", cfg.VisionVocab, cfg.LLM.Hidden).InitNormal(rng, nn.InitStd)
	m.visionHead = m.params.Add("llm.vision_head.weight", cfg.VisionVocab, cfg.LLM.Hidden).InitNormal(rng, nn.InitStd)
	return m, nil
}

func (m *lwm) Config() Config     { return m.cfg }
func (m *lwm) Params() *nn.Params { return m.params }

// EOF and EOV return LWM's end-of-frame and end-of-vision ids in the vision
// vocabulary: the first two ids after the codebook (data.py: 8192, 8193).
func (c Config) EOF() int32 { return int32(c.Codebook) }

// EOV is the end-of-vision id (see EOF).
func (c Config) EOV() int32 { return int32(c.Codebook) + 1 }

// LWMVision lays out an image (one frame) or a video (several frames) as
// LWM's data.py does: <vision> (text) + per frame its codes and <eof>, the
// last frame's codes followed by <eov> instead, then </vision> (text). It
// returns the ids and the vision flags to append to a row.
func LWMVision(c Config, frames [][]int32) ([]int32, []bool) {
	ids := []int32{c.Special.VisionBeg}
	vis := []bool{false}
	for i, f := range frames {
		ids = append(ids, f...)
		for range f {
			vis = append(vis, true)
		}
		end := c.EOF()
		if i == len(frames)-1 {
			end = c.EOV()
		}
		ids = append(ids, end)
		vis = append(vis, true)
	}
	return append(ids, c.Special.VisionEnd), append(vis, false)
}

func (m *lwm) Forward(tp *kernels.Tape, b *Batch) (Output, error) {
	if err := b.checkRows(); err != nil {
		return Output{}, err
	}
	if b.Images != nil {
		return Output{}, fmt.Errorf("batch: images: LWM takes vision tokens (VQGAN codes), not pixels")
	}
	rows := make([][]piece, len(b.Tokens))
	for r, toks := range b.Tokens {
		for t, id := range toks {
			vis := b.Vision != nil && b.Vision[r][t]
			limit := m.cfg.LLM.Vocab
			if vis {
				limit = m.cfg.VisionVocab
			}
			if id < 0 || int(id) >= limit {
				kind := "text"
				if vis {
					kind = "vision"
				}
				return Output{}, fmt.Errorf("batch: tokens[%d][%d] = %d is not a %s id (vocabulary %d)", r, t, id, kind, limit)
			}
			rows[r] = append(rows[r], piece{tok: id, feat: -1, vision: vis, loss: b.tokensLoss(r, t), seg: b.segment(r, t)})
		}
	}
	p, err := pack(rows, 0)
	if err != nil {
		return Output{}, fmt.Errorf("batch: %w", err)
	}
	h := m.llm.Forward(tp, p.embed(tp, m.llm.Embed, m.vte, nil, m.cfg.LLM.Hidden), llm.Layout{Pos: p.pos, Seg: p.layoutSeg(), KeyLens: p.lens})
	textLoss, nt := lmLoss(tp, h, func(x *kernels.Tensor) *kernels.Tensor { return m.llm.Logits(tp, x) }, p, false, 0)
	visLoss, nv := lmLoss(tp, h, func(x *kernels.Tensor) *kernels.Tensor { return tp.Linear(x, m.visionHead, nil) }, p, true, 0)
	s := newLossSum(tp, m.cfg)
	if nt > 0 {
		s.add("ce_text", textLoss)
	}
	if nv > 0 {
		s.add("ce_vision", visLoss)
	}
	return s.output()
}

// vqModel trains LWM's VQGAN image tokenizer on its own. Forward reads
// Images ([-1, 1] values) and returns recon + vq. Parameters: vqgan.*.
type vqModel struct {
	cfg    Config
	params *nn.Params
	VQ     *vqgan.VQGAN
}

func newVQ(cfg Config, seed uint64) (*vqModel, error) {
	m := &vqModel{cfg: cfg, params: nn.NewParams()}
	var err error
	m.VQ, err = vqgan.New(m.params, nn.Rng(seed), "vqgan", cfg.VQGAN)
	return m, err
}

func (m *vqModel) Config() Config     { return m.cfg }
func (m *vqModel) Params() *nn.Params { return m.params }

func (m *vqModel) Forward(tp *kernels.Tape, b *Batch) (Output, error) {
	if b.Group != nil {
		return Output{}, fmt.Errorf("batch: group: only BLIP-2 stage 1 (ITC, ITM) uses one")
	}
	if b.Images == nil {
		return Output{}, fmt.Errorf("batch: images: the VQGAN trains on images")
	}
	c := m.cfg.VQGAN
	if s := b.Images.Shape; len(s) != 4 || s[1] != c.Channels || s[2]%c.Downsample() != 0 || s[3]%c.Downsample() != 0 {
		return Output{}, fmt.Errorf("batch: images: shape %v, want [N, %d, H, W] with H, W multiples of %d", s, c.Channels, c.Downsample())
	}
	l := m.VQ.Forward(tp, b.Images)
	if m.cfg.LossWeights == nil {
		return Output{Loss: l.Total, Terms: map[string]float32{"recon": l.Recon.Item(), "vq": l.VQ.Item(), "loss": l.Total.Item()},
			Parts: map[string]*kernels.Tensor{"recon": l.Recon, "vq": l.VQ}}, nil
	}
	s := newLossSum(tp, m.cfg)
	s.add("recon", l.Recon)
	s.add("vq", l.VQ)
	return s.output()
}

// Tokenizer returns the VQGAN of a model built with Family VQGAN, to turn
// images into LWM vision ids.
func Tokenizer(m Model) (*vqgan.VQGAN, bool) {
	v, ok := m.(*vqModel)
	if !ok {
		return nil, false
	}
	return v.VQ, true
}
