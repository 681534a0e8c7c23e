package models

import (
	"fmt"

	"github.com/loomtrain/loom/models/llm"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/qformer"
	"github.com/loomtrain/loom/models/tokenizer"
	"github.com/loomtrain/loom/models/vit"
	"github.com/loomtrain/loom/models/vqgan"
)

// Family names a model family.
type Family string

// The families. InstructBLIP is BLIP-2's instruction-aware variant; VILA is
// LLaVA-1.5's architecture with VILA's projector choice; VQGAN is LWM's
// image tokenizer trained on its own.
const (
	BLIP2        Family = "blip2"
	InstructBLIP Family = "instructblip"
	QwenVL       Family = "qwen-vl"
	LLaVA        Family = "llava"
	VILA         Family = "vila"
	LWM          Family = "lwm"
	VQGAN        Family = "vqgan"
)

// Families lists every family New builds.
var Families = []Family{BLIP2, InstructBLIP, QwenVL, LLaVA, VILA, LWM, VQGAN}

// Sizes lists the size presets of Preset.
var Sizes = []string{"tiny", "small", "paper"}

// Projector kinds of LLaVA/VILA (LLaVA builder.py; VILA base_projector.py).
const (
	ProjLinear        = "linear"         // VILA paper §3.1
	ProjMLP2xGELU     = "mlp2x_gelu"     // LLaVA-1.5: Linear → GELU → Linear
	ProjMLPDownsample = "mlp_downsample" // VILA-1.5: 2×2 concat → LN → Linear → GELU → Linear
)

// Config describes one model of a family. Only the parts a family uses
// are read (documented per field).
type Config struct {
	Family Family
	Size   string // preset name, informational

	ViT     vit.Config     // all but LWM and VQGAN
	LLM     llm.Config     // all but BLIP-2 stage 1 and VQGAN
	QFormer qformer.Config // BLIP-2, InstructBLIP
	VQGAN   vqgan.Config   // VQGAN (and LWM's image tokenizer)

	// Stage is BLIP-2's pre-training stage: 1 (Q-Former with ITC, ITM, ITG)
	// or 2 (Q-Former into a frozen LLM). InstructBLIP is always stage 2.
	Stage int
	// Projector is LLaVA/VILA's projector kind.
	Projector string
	// Queries and QueryGrid size Qwen-VL's adapter (256 queries on a 16×16
	// sin-cos grid); Heads its attention heads.
	Queries, QueryGrid, AdapterHeads int
	// VisionVocab is LWM's vision vocabulary: codebook codes plus extra ids,
	// of which the first two are <eof> (= codebook size) and <eov>.
	VisionVocab int
	// Codebook is LWM's VQ codebook size (vision ids below it are codes).
	Codebook int
	// ImageSize is the input resolution in pixels.
	ImageSize int
	// LabelSmoothing of BLIP-2's ITC and ITG losses (0.1 in LAVIS).
	LabelSmoothing float32
	// Special holds the special-token ids (set from a tokenizer with
	// WithTokenizer; presets place them at the end of the vocabulary).
	Special Special
	// LossWeights weights the loss terms Forward combines: the loss is
	// Σ wᵢ·termᵢ over the terms LossTerms names, with LossTerms' (the
	// papers') weight for a term not listed. A weight of 0 leaves the term
	// out of the loss (BLIP-2 then skips its ITM or ITG pass). Names must
	// be terms of the family; weights finite and >= 0, not all 0.
	LossWeights map[string]float64 `json:",omitempty"`
}

// Validate names the first field that does not fit the family.
func (c Config) Validate() error {
	known := false
	for _, f := range Families {
		known = known || f == c.Family
	}
	if !known {
		return fmt.Errorf("family %q: want one of %v", c.Family, Families)
	}
	if err := c.validateLossWeights(); err != nil {
		return err
	}
	if c.Family == VQGAN {
		return c.VQGAN.Validate()
	}
	if c.Family != LWM {
		if err := c.ViT.Validate(); err != nil {
			return err
		}
		if c.ImageSize%c.ViT.PatchSize != 0 {
			return fmt.Errorf("image_size %d is not a multiple of the ViT patch %d", c.ImageSize, c.ViT.PatchSize)
		}
	}
	needLLM := !(c.Family == BLIP2 && c.Stage == 1)
	if needLLM {
		if err := c.LLM.Validate(); err != nil {
			return err
		}
	}
	switch c.Family {
	case BLIP2, InstructBLIP:
		if c.Family == BLIP2 && c.Stage != 1 && c.Stage != 2 {
			return fmt.Errorf("stage %d: BLIP-2 has stages 1 and 2", c.Stage)
		}
		if err := c.QFormer.Validate(); err != nil {
			return err
		}
		if c.QFormer.VisionWidth != c.ViT.Width {
			return fmt.Errorf("qformer.vision_width %d differs from vit.width %d", c.QFormer.VisionWidth, c.ViT.Width)
		}
	case QwenVL:
		if c.Queries != c.QueryGrid*c.QueryGrid || c.Queries <= 0 {
			return fmt.Errorf("queries %d must be query_grid² (%d²)", c.Queries, c.QueryGrid)
		}
		if c.AdapterHeads <= 0 || c.LLM.Hidden%c.AdapterHeads != 0 || c.LLM.Hidden%4 != 0 {
			return fmt.Errorf("adapter_heads %d must divide llm.hidden %d (a multiple of 4)", c.AdapterHeads, c.LLM.Hidden)
		}
	case LLaVA, VILA:
		switch c.Projector {
		case ProjLinear, ProjMLP2xGELU:
		case ProjMLPDownsample:
			if (c.ImageSize/c.ViT.PatchSize)%2 != 0 {
				return fmt.Errorf("projector %s needs an even patch grid, got %d", c.Projector, c.ImageSize/c.ViT.PatchSize)
			}
		default:
			return fmt.Errorf("projector %q: want %s, %s or %s", c.Projector, ProjLinear, ProjMLP2xGELU, ProjMLPDownsample)
		}
	case LWM:
		if c.Codebook <= 0 || c.VisionVocab < c.Codebook+2 {
			return fmt.Errorf("vision_vocab %d must hold the %d codes plus <eof> and <eov>", c.VisionVocab, c.Codebook)
		}
	}
	return nil
}

// AppliedLabelSmoothing is the label smoothing c's loss terms really
// use: LabelSmoothing in BLIP-2 stage 1's ITC and ITG (LAVIS
// blip2_qformer), none in every language-model loss (BLIP-2 stage 2,
// InstructBLIP, Qwen-VL, LLaVA, VILA, LWM: their LLM's cross-entropy has
// no smoothing), and none in VQGAN's reconstruction.
func (c Config) AppliedLabelSmoothing() float32 {
	if c.Family == BLIP2 && c.Stage == 1 {
		return c.LabelSmoothing
	}
	return 0
}

// qformerConfig returns the Q-Former config of the family and stage.
func (c Config) qformerConfig() qformer.Config {
	q := c.QFormer
	switch {
	case c.Family == BLIP2 && c.Stage == 1:
		q.TextSide, q.Objectives = true, true
	case c.Family == InstructBLIP:
		q.TextSide, q.Objectives = true, false
	default:
		q.TextSide, q.Objectives = false, false
	}
	return q
}

// ParamCount counts the parameters New(c) creates, from the config alone.
func ParamCount(c Config) int {
	switch c.Family {
	case VQGAN:
		return vqgan.ParamCount(c.VQGAN)
	case LWM:
		return llm.ParamCount(c.LLM) + 2*c.VisionVocab*c.LLM.Hidden
	}
	n := vit.ParamCount(c.ViT)
	switch c.Family {
	case BLIP2, InstructBLIP:
		n += 2 * c.ViT.Width // ln_vision
		n += qformer.ParamCount(c.qformerConfig())
		if c.Family == InstructBLIP || c.Stage == 2 {
			n += nn.LinearParams(c.QFormer.Hidden, c.LLM.Hidden, true) + llm.ParamCount(c.LLM)
		}
	case QwenVL:
		d := c.LLM.Hidden
		n += c.Queries * d
		if c.ViT.Width != d {
			n += c.ViT.Width * d // kv_proj, no bias
		}
		n += 2*2*d + nn.MHAParams(d, d, true, true) // ln_q, ln_kv, attn
		n += 2*d + d*d                              // ln_post, proj
		n += llm.ParamCount(c.LLM)
	case LLaVA, VILA:
		n += projectorParams(c) + llm.ParamCount(c.LLM)
	}
	return n
}

func projectorParams(c Config) int {
	w, d := c.ViT.Width, c.LLM.Hidden
	switch c.Projector {
	case ProjLinear:
		return nn.LinearParams(w, d, true)
	case ProjMLP2xGELU:
		return nn.LinearParams(w, d, true) + nn.LinearParams(d, d, true)
	}
	return 2*4*w + nn.LinearParams(4*w, d, true) + nn.LinearParams(d, d, true)
}

// WithVocab sets the text vocabulary of the LLM and the Q-Former and the
// special-token ids.
func (c Config) WithVocab(vocab int, s Special) Config {
	c.LLM.Vocab = vocab
	c.QFormer.Vocab = vocab
	c.Special = s
	return c
}

// WithTokenizer sets the vocabulary and special-token ids from a tokenizer
// (see SpecialFrom); the tiny and small presets are meant to be used with a
// tokenizer trained by `loom tokenizer train`.
func (c Config) WithTokenizer(t tokenizer.Tokenizer) (Config, error) {
	s, err := SpecialFrom(t)
	if err != nil {
		return c, err
	}
	return c.WithVocab(t.VocabSize(), s), nil
}
