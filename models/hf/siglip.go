package hf

import (
	"fmt"
	"strings"

	"github.com/loomtrain/loom/models/vit"
)

// SigLIP's vision tower (SiglipVisionModel; the vision half of SiglipModel;
// the tower of LLaVA-OneVision and PaliGemma-style models) in the layout
// of transformers' modeling_siglip.py:
//
//	vision_model.embeddings.patch_embedding.{weight,bias}  conv with bias
//	vision_model.embeddings.position_embedding.weight      [(S/p)², H], no class token
//	vision_model.encoder.layers.N.*                         CLIP's names
//	vision_model.post_layernorm.*                           over the whole sequence
//	vision_model.head.probe                                 [1, 1, H]
//	vision_model.head.attention.in_proj_{weight,bias}       nn.MultiheadAttention: q;k;v on dim 0
//	vision_model.head.attention.out_proj.*, head.layernorm.*, head.mlp.fc1/fc2.*
//
// There is no pre-LayerNorm. The head's packed projection is split into
// Loom's head.attention.{q,k,v}_proj on import and concatenated on export.

// SiglipVisionConfig reads a SiglipVisionModel config.json, or the
// vision_config of a SiglipModel or LLaVA config, into a vit.Config: patch
// bias, no class token, no pre-LayerNorm, post-LayerNorm over the sequence,
// the attention-pooling head unless vision_use_head is false, and
// SiglipVisionConfig's defaults for absent fields (hidden 768, 12 layers and
// heads, MLP 3072, image 224, patch 16, gelu_pytorch_tanh, eps 1e-6).
func SiglipVisionConfig(configJSON []byte) (vit.Config, error) {
	j, err := visionSection(configJSON, "SigLIP vision", "siglip_vision_model", "siglip")
	if err != nil {
		return vit.Config{}, err
	}
	c, err := j.apply(visionDefaults{hidden: 768, inter: 3072, layers: 12, heads: 12, channels: 3, image: 224, patch: 16, act: "gelu_pytorch_tanh", eps: 1e-6})
	if err != nil {
		return vit.Config{}, fmt.Errorf("SigLIP vision config: %w", err)
	}
	c.PatchBias, c.PostNorm, c.Head = true, vit.PostNormAll, j.VisionUseHead == nil || *j.VisionUseHead
	if err := c.Validate(); err != nil {
		return vit.Config{}, fmt.Errorf("SigLIP vision config: %w", err)
	}
	return c, nil
}

// SiglipVisionConfigJSON writes c as a SiglipVisionModel config.json; c
// must have SigLIP's structure (patch bias, no class token, no
// pre-LayerNorm, post-LayerNorm over the sequence).
func SiglipVisionConfigJSON(c vit.Config) ([]byte, error) {
	if c.ClassToken || !c.PatchBias || c.PreNorm || c.PostNorm != vit.PostNormAll {
		return nil, fmt.Errorf("SigLIP vision config: %+v is not SigLIP's structure (patch bias, no class token, no pre-LayerNorm, post-LayerNorm over the sequence)", c)
	}
	m, err := visionConfigMap(c)
	if err != nil {
		return nil, fmt.Errorf("SigLIP vision config: %w", err)
	}
	m["architectures"] = []string{"SiglipVisionModel"}
	m["model_type"] = "siglip_vision_model"
	m["vision_use_head"] = c.Head
	return marshalConfig(m)
}

// SiglipVisionMapping maps a SigLIP vision tower under hfPrefix
// ("vision_model.") onto a vit built with c under loomPrefix ("vit."). A
// tower built without the head (c.Head false) ignores the checkpoint's
// head; position_ids buffers and, in a whole SiglipModel, the text tower
// and logit_scale/logit_bias are skipped.
func SiglipVisionMapping(c vit.Config, hfPrefix, loomPrefix string) Mapping {
	m := Mapping{Arch: "SiglipVisionModel", Scope: visionScope(loomPrefix)}
	e := func(hf, loom string) {
		m.Entries = append(m.Entries, Entry{HF: hfPrefix + hf, Loom: []string{loomPrefix + loom}})
	}
	e("embeddings.patch_embedding.weight", "embeddings.patch_embedding.weight")
	e("embeddings.patch_embedding.bias", "embeddings.patch_embedding.bias")
	e("embeddings.position_embedding.weight", "embeddings.position_embedding.weight")
	m.Entries = append(m.Entries, visionLayers(c.Layers, hfPrefix, loomPrefix)...)
	m.Entries, m.Ignore = visionPostNorm(c, m.Entries, hfPrefix, loomPrefix)
	if c.Head {
		h, l := hfPrefix+"head.", loomPrefix+"head."
		m.Entries = append(m.Entries, Entry{HF: h + "probe", Loom: []string{l + "probe"}, HFShape: []int{1, 1, c.Width}})
		for _, s := range []string{"weight", "bias"} {
			m.Entries = append(m.Entries, Entry{HF: h + "attention.in_proj_" + s, Split: true,
				Loom: []string{l + "attention.q_proj." + s, l + "attention.k_proj." + s, l + "attention.v_proj." + s}})
		}
		for _, mod := range []string{"attention.out_proj", "layernorm", "mlp.fc1", "mlp.fc2"} {
			for _, s := range []string{".weight", ".bias"} {
				e("head."+mod+s, "head."+mod+s)
			}
		}
	} else {
		m.Ignore = append(m.Ignore, hfPrefix+"head")
	}
	root := strings.TrimSuffix(hfPrefix, "vision_model.")
	m.Ignore = append(m.Ignore, hfPrefix+"embeddings.position_ids", root+"text_model", root+"logit_scale", root+"logit_bias")
	return m
}
