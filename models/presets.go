package models

import (
	"fmt"

	"github.com/loomtrain/loom/models/llm"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/qformer"
	"github.com/loomtrain/loom/models/vit"
	"github.com/loomtrain/loom/models/vqgan"
)

// Text vocabulary of the tiny and small presets (a tokenizer trained with
// `loom tokenizer train --vocab-size 512|4096`); WithVocab replaces it.
const (
	tinyVocab  = 512
	smallVocab = 4096
)

// Paper-size components, each with its source.
var (
	// LLaMA-2-7B / Vicuna-7B v1.5 (Llama 2 paper Table 1; HF config:
	// hidden 4096, 32 layers, 32 heads, intermediate 11008, vocab 32000).
	llama2_7B = llm.Config{Vocab: 32000, Hidden: 4096, Layers: 32, Heads: 32, FFN: 11008, Theta: 10000, Eps: 1e-5}
	// Qwen-7B (HF Qwen/Qwen-VL config: vocab 151936, intermediate_size
	// 22016 = 2×11008, c_attn with bias, untied lm_head).
	qwen7B = llm.Config{Vocab: 151936, Hidden: 4096, Layers: 32, Heads: 32, FFN: 11008, Theta: 10000, Eps: 1e-6, QKVBias: true}
	// EVA-CLIP ViT-g/14 as BLIP-2 uses it: 39 of 40 layers (LAVIS
	// eva_vit.py create_eva_vit_g: width 1408, heads 16, mlp 6144, patch
	// 14, patch bias, class token, no ln_pre). EVA's q/v-only biases are
	// modelled as full q/k/v biases (+1408 per layer).
	evaViTg = vit.Config{ImageSize: 224, PatchSize: 14, Channels: 3, Width: 1408, Layers: 39, Heads: 16, MLPDim: 6144,
		ClassToken: true, PatchBias: true, Act: nn.ActGELU, Eps: 1e-6}
	// OpenCLIP ViT-bigG/14 in Qwen-VL (HF visual config: width 1664, 48
	// layers, 16 heads, mlp 8192, patch 14, 448 px, positions learned on a
	// 16×16 grid, ln_pre, no class token).
	clipBigG = vit.Config{ImageSize: 448, PatchSize: 14, Channels: 3, Width: 1664, Layers: 48, Heads: 16, MLPDim: 8192,
		PosGrid: 16, PreNorm: true, Act: nn.ActGELU, Eps: 1e-6}
	// OpenAI CLIP ViT-L/14-336 (LLaVA-1.5, VILA): width 1024, 24 layers,
	// 16 heads, mlp 4096, class token, ln_pre, quick GELU.
	clipL336 = vit.Config{ImageSize: 336, PatchSize: 14, Channels: 3, Width: 1024, Layers: 24, Heads: 16, MLPDim: 4096,
		ClassToken: true, PreNorm: true, Act: nn.ActQuickGELU, Eps: 1e-5}
	// BLIP-2's Q-Former: BERT-base with [DEC] (vocab 30522+1), 32
	// queries, cross-attention every 2nd layer onto 1408-d features,
	// ITC dim 256 (LAVIS blip2_qformer.py, Qformer.py).
	qformerBase = qformer.Config{Hidden: 768, Layers: 12, Heads: 12, Intermediate: 3072, Vocab: 30523, MaxPos: 512,
		Queries: 32, CrossFreq: 2, VisionWidth: 1408, EmbedDim: 256, Dropout: 0.1}
	// LWM's VQGAN (lwm/vqgan.py VQGANConfig): 256 px, channel multipliers
	// (1, 2, 2, 4, 6) on 128 → 16×16 codes, 2 res blocks, 8192×64 codebook.
	lwmVQGAN = vqgan.Config{ImageSize: 256, Channels: 3, Base: 128, Mult: []int{1, 2, 2, 4, 6}, NumRes: 2, Groups: 32,
		CodeDim: 64, Codebook: 8192, Beta: 0.25}
)

func tinyViT(img int, cls bool) vit.Config {
	return vit.Config{ImageSize: img, PatchSize: 4, Channels: 3, Width: 16, Layers: 2, Heads: 2, MLPDim: 32,
		ClassToken: cls, PreNorm: true, Act: nn.ActGELU}
}

func smallViT(img int, cls bool) vit.Config {
	return vit.Config{ImageSize: img, PatchSize: 8, Channels: 3, Width: 64, Layers: 4, Heads: 4, MLPDim: 256,
		ClassToken: cls, PreNorm: true, Act: nn.ActGELU}
}

var (
	tinyLLM  = llm.Config{Vocab: tinyVocab, Hidden: 16, Layers: 2, Heads: 2, FFN: 32, Theta: 10000}
	smallLLM = llm.Config{Vocab: smallVocab, Hidden: 128, Layers: 4, Heads: 4, FFN: 352, Theta: 10000}
)

// Preset returns the configuration of a family at a size: "tiny" (unit
// tests, seconds on a CPU), "small" (the demo, minutes on two cores) or
// "paper" (the published model). BLIP-2 presets are stage 1; set Stage to
// 2 for stage 2. The paper BLIP-2 and InstructBLIP LLM is Vicuna-7B (the
// InstructBLIP-Vicuna variant): Loom's decoder is LLaMA-style, so
// BLIP-2's OPT and FlanT5 are not reproduced.
func Preset(f Family, size string) (Config, error) {
	c := Config{Family: f, Size: size, Stage: 1, LabelSmoothing: 0.1}
	switch size {
	case "tiny":
		c.ImageSize = 16
		c.LLM = tinyLLM
		c.Special = defaultSpecial(tinyVocab)
		switch f {
		case BLIP2, InstructBLIP:
			c.ViT = tinyViT(16, true)
			c.QFormer = qformer.Config{Hidden: 16, Layers: 2, Heads: 2, Intermediate: 32, Vocab: tinyVocab, MaxPos: 32,
				Queries: 4, CrossFreq: 2, VisionWidth: 16, EmbedDim: 8}
		case QwenVL:
			c.ViT = tinyViT(16, false)
			c.ViT.Width, c.ViT.MLPDim = 24, 48 // ≠ LLM width: exercises kv_proj
			c.ViT.PosGrid = 2                  // trained at 8 px (2×2 patches), run at 16 px: exercises interpolation
			c.LLM.QKVBias = true               // as Qwen-7B
			c.Queries, c.QueryGrid, c.AdapterHeads = 4, 2, 2
		case LLaVA:
			c.ViT, c.Projector = tinyViT(16, true), ProjMLP2xGELU
		case VILA:
			c.ViT, c.Projector = tinyViT(16, true), ProjMLPDownsample
		case LWM:
			c.Codebook, c.VisionVocab = 32, 40
		case VQGAN:
			c.VQGAN = vqgan.Config{ImageSize: 8, Channels: 3, Base: 4, Mult: []int{1, 2}, NumRes: 1, Groups: 2, CodeDim: 4, Codebook: 16, Beta: 0.25}
		}
	case "small":
		c.ImageSize = 32
		c.LLM = smallLLM
		c.Special = defaultSpecial(smallVocab)
		switch f {
		case BLIP2, InstructBLIP:
			c.ViT = smallViT(32, true)
			c.QFormer = qformer.Config{Hidden: 64, Layers: 4, Heads: 4, Intermediate: 256, Vocab: smallVocab, MaxPos: 64,
				Queries: 8, CrossFreq: 2, VisionWidth: 64, EmbedDim: 32}
		case QwenVL:
			c.ViT = smallViT(32, false)
			c.LLM.QKVBias = true
			c.Queries, c.QueryGrid, c.AdapterHeads = 16, 4, 4
		case LLaVA:
			c.ViT, c.Projector = smallViT(32, true), ProjMLP2xGELU
		case VILA:
			c.ViT, c.Projector = smallViT(32, true), ProjMLPDownsample
		case LWM:
			c.Codebook, c.VisionVocab = 256, 264
		case VQGAN:
			c.ImageSize = 32
			c.VQGAN = vqgan.Config{ImageSize: 32, Channels: 3, Base: 16, Mult: []int{1, 2, 2}, NumRes: 1, Groups: 4, CodeDim: 16, Codebook: 256, Beta: 0.25}
		}
	case "paper":
		switch f {
		case BLIP2, InstructBLIP:
			c.ImageSize, c.ViT, c.QFormer, c.LLM = 224, evaViTg, qformerBase, llama2_7B
		case QwenVL:
			c.ImageSize, c.ViT, c.LLM = 448, clipBigG, qwen7B
			c.Queries, c.QueryGrid, c.AdapterHeads = 256, 16, 32 // 4096/128 heads (resampler.py)
		case LLaVA:
			c.ImageSize, c.ViT, c.LLM, c.Projector = 336, clipL336, llama2_7B, ProjMLP2xGELU
		case VILA:
			// VILA paper §3.1: linear projector on CLIP-L/336 and LLaMA-2-7B.
			c.ImageSize, c.ViT, c.LLM, c.Projector = 336, clipL336, llama2_7B, ProjLinear
		case LWM:
			c.LLM = llama2_7B
			c.LLM.Theta = 50e6 // vision-language stages (recipes.md §5)
			c.Codebook, c.VisionVocab = 8192, 8448
		case VQGAN:
			c.ImageSize, c.VQGAN = 256, lwmVQGAN
		}
		c.Special = defaultSpecial(c.LLM.Vocab)
	default:
		return Config{}, fmt.Errorf("size %q: want one of %v", size, Sizes)
	}
	known := false
	for _, g := range Families {
		known = known || g == f
	}
	if !known {
		return Config{}, fmt.Errorf("family %q: want one of %v", f, Families)
	}
	if f == InstructBLIP {
		c.Stage = 2
	}
	return c, nil
}
