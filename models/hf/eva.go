package hf

import (
	"fmt"

	"github.com/loomtrain/loom/models/vit"
)

// EVA ViT-g as Blip2ForConditionalGeneration (and InstructBLIP) stores it,
// in the layout of transformers' modeling_blip_2.py:
//
//	vision_model.embeddings.class_embedding         [1, 1, H]      bare parameter
//	vision_model.embeddings.patch_embedding.{weight,bias}          conv with bias
//	vision_model.embeddings.position_embedding      [1, N+1, H]    bare parameter
//	vision_model.encoder.layers.N.self_attn.qkv.weight  [3H, H]    fused, no bias tensor
//	vision_model.encoder.layers.N.self_attn.{q_bias,v_bias} [H]    the k bias is zero
//	vision_model.encoder.layers.N.self_attn.projection.*           output projection
//	vision_model.encoder.layers.N.{layer_norm1,layer_norm2,mlp.fc1,mlp.fc2}.*
//	vision_model.post_layernorm.*                                  LAVIS ln_vision, whole sequence
//
// There is no pre-LayerNorm. qkv.weight is split along dim 0 into Loom's
// q_proj, k_proj, v_proj weights (Blip2Attention reshapes the output to
// [B, T, 3, heads, d], q first); q_bias and v_bias load into q_proj.bias and
// v_proj.bias and k_proj.bias is zeroed (Mapping.Zero). Loom trains that k
// bias like any other parameter unless it is frozen (BLIP-2 freezes the
// whole ViT); Export writes no k bias, so a non-zero one would be lost.

// EVAVisionConfig reads the vision_config of a Blip2 or InstructBLIP
// config.json (or a bare Blip2VisionConfig) into a vit.Config: class
// token, patch bias, no pre-LayerNorm, post-LayerNorm over the sequence,
// exact GELU, and Blip2VisionConfig's defaults for absent fields (hidden
// 1408, 39 layers, 16 heads, MLP 6144, image 224, patch 14, eps 1e-6). With
// qkv_bias false the tower has no q, k, v biases (NoQKVBias).
//
// Loom's BLIP-2 model keeps LAVIS's ln_vision outside the ViT: to build it
// from this config, clear PostNorm and map vision_model.post_layernorm to
// ln_vision (EVAVisionMapping then ignores it).
func EVAVisionConfig(configJSON []byte) (vit.Config, error) {
	j, err := visionSection(configJSON, "EVA (Blip2 vision)", "blip_2_vision_model", "instructblip_vision_model")
	if err != nil {
		return vit.Config{}, err
	}
	c, err := j.apply(visionDefaults{hidden: 1408, inter: 6144, layers: 39, heads: 16, channels: 3, image: 224, patch: 14, act: "gelu", eps: 1e-6})
	if err != nil {
		return vit.Config{}, fmt.Errorf("EVA vision config: %w", err)
	}
	c.Channels = 3 // Blip2VisionEmbeddings: Conv2d(in_channels=3, ...)
	c.ClassToken, c.PatchBias, c.PostNorm = true, true, vit.PostNormAll
	c.NoQKVBias = j.QKVBias != nil && !*j.QKVBias
	if err := c.Validate(); err != nil {
		return vit.Config{}, fmt.Errorf("EVA vision config: %w", err)
	}
	return c, nil
}

// EVAVisionConfigJSON writes c as a Blip2VisionConfig (the vision_config
// of a Blip2 config.json; model_type blip_2_vision_model).
func EVAVisionConfigJSON(c vit.Config) ([]byte, error) {
	if !c.ClassToken || !c.PatchBias || c.PreNorm || c.Head || c.PostNorm == vit.PostNormPooled || c.Channels != 3 {
		return nil, fmt.Errorf("EVA vision config: %+v is not EVA's structure (class token, patch bias, 3 channels, no pre-LayerNorm, post-LayerNorm over the sequence or none)", c)
	}
	m, err := visionConfigMap(c)
	if err != nil {
		return nil, fmt.Errorf("EVA vision config: %w", err)
	}
	delete(m, "num_channels")
	m["model_type"] = "blip_2_vision_model"
	m["qkv_bias"] = !c.NoQKVBias
	return marshalConfig(m)
}

// EVAVisionMapping maps an EVA tower under hfPrefix ("vision_model." in
// Blip2ForConditionalGeneration) onto a vit built with c under loomPrefix
// ("vit."). When c has no post-LayerNorm the checkpoint's is ignored here
// (Loom's BLIP-2 maps it to its own ln_vision).
func EVAVisionMapping(c vit.Config, hfPrefix, loomPrefix string) Mapping {
	m := Mapping{Arch: "Blip2VisionModel (EVA)", Scope: visionScope(loomPrefix)}
	e := func(hf, loom string, hfShape ...int) {
		m.Entries = append(m.Entries, Entry{HF: hfPrefix + hf, Loom: []string{loomPrefix + loom}, HFShape: hfShape})
	}
	g := c.Grid()
	e("embeddings.class_embedding", "embeddings.class_embedding", 1, 1, c.Width)
	e("embeddings.patch_embedding.weight", "embeddings.patch_embedding.weight")
	e("embeddings.patch_embedding.bias", "embeddings.patch_embedding.bias")
	e("embeddings.position_embedding", "embeddings.position_embedding.weight", 1, g*g+1, c.Width)
	for i := 0; i < c.Layers; i++ {
		n := fmt.Sprintf("encoder.layers.%d.", i)
		a, l := hfPrefix+n+"self_attn.", loomPrefix+n+"self_attn."
		m.Entries = append(m.Entries, Entry{HF: a + "qkv.weight", Split: true,
			Loom: []string{l + "q_proj.weight", l + "k_proj.weight", l + "v_proj.weight"}})
		if !c.NoQKVBias {
			e(n+"self_attn.q_bias", n+"self_attn.q_proj.bias")
			e(n+"self_attn.v_bias", n+"self_attn.v_proj.bias")
			m.Zero = append(m.Zero, l+"k_proj.bias")
		}
		for _, s := range []string{".weight", ".bias"} {
			e(n+"self_attn.projection"+s, n+"self_attn.out_proj"+s)
			for _, mod := range []string{"layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2"} {
				e(n+mod+s, n+mod+s)
			}
		}
	}
	m.Entries, m.Ignore = visionPostNorm(c, m.Entries, hfPrefix, loomPrefix)
	m.Ignore = append(m.Ignore, hfPrefix+"embeddings.position_ids")
	return m
}

// Blip2VisionMapping maps the vision side of a whole
// Blip2ForConditionalGeneration or InstructBLIP checkpoint onto Loom's
// BLIP-2: the EVA tower (built with c, whose PostNorm must be empty) under
// loomPrefix ("vit.") and vision_model.post_layernorm onto Loom's
// ln_vision (LAVIS's ln_vision, which HF renamed). The Q-Former, the query
// tokens, the language projection and the LM are ignored (other parts read
// them).
func Blip2VisionMapping(c vit.Config, loomPrefix string) (Mapping, error) {
	if c.PostNorm != vit.PostNormNone {
		return Mapping{}, fmt.Errorf("Blip2 vision: the tower has its own post-LayerNorm (%q); Loom's BLIP-2 applies ln_vision instead", c.PostNorm)
	}
	m := EVAVisionMapping(c, "vision_model.", loomPrefix)
	for _, s := range []string{".weight", ".bias"} {
		m.Entries = append(m.Entries, Entry{HF: "vision_model.post_layernorm" + s, Loom: []string{"ln_vision" + s}})
	}
	m.Scope = append(m.Scope, "ln_vision")
	m.Ignore = append(m.Ignore, "query_tokens", "qformer", "language_projection", "language_model")
	return m, nil
}
