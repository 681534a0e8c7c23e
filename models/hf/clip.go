package hf

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/vit"
)

// CLIP's vision tower (CLIPVisionModel; the vision half of CLIPModel; LLaVA's
// vision_tower) in the layout of transformers' modeling_clip.py:
//
//	vision_model.embeddings.class_embedding            [H]          bare parameter
//	vision_model.embeddings.patch_embedding.weight     [H, 3, p, p] no bias
//	vision_model.embeddings.position_embedding.weight  [(S/p)²+1, H]
//	vision_model.pre_layrnorm.{weight,bias}                         (sic)
//	vision_model.encoder.layers.N.{layer_norm1,self_attn.{q,k,v,out}_proj,layer_norm2,mlp.fc1,mlp.fc2}.*
//	vision_model.post_layernorm.{weight,bias}                       pooled CLS only
//
// Loom's vit package uses the same names below its prefix, so the table is
// the identity apart from the prefixes.

// visionJSON holds the fields the CLIP, SigLIP and Blip2 vision configs
// share (transformers' CLIPVisionConfig, SiglipVisionConfig,
// Blip2VisionConfig); pointers tell an absent field from a zero one, so
// each layout applies its own defaults.
type visionJSON struct {
	ModelType         string   `json:"model_type,omitempty"`
	HiddenSize        *int     `json:"hidden_size,omitempty"`
	IntermediateSize  *int     `json:"intermediate_size,omitempty"`
	NumHiddenLayers   *int     `json:"num_hidden_layers,omitempty"`
	NumAttentionHeads *int     `json:"num_attention_heads,omitempty"`
	NumChannels       *int     `json:"num_channels,omitempty"`
	ImageSize         *int     `json:"image_size,omitempty"`
	PatchSize         *int     `json:"patch_size,omitempty"`
	HiddenAct         *string  `json:"hidden_act,omitempty"`
	LayerNormEps      *float64 `json:"layer_norm_eps,omitempty"`
	QKVBias           *bool    `json:"qkv_bias,omitempty"`
	VisionUseHead     *bool    `json:"vision_use_head,omitempty"`
}

// visionDefaults are a layout's config defaults (the keyword defaults of its
// transformers config class).
type visionDefaults struct {
	hidden, inter, layers, heads, channels, image, patch int
	act                                                  string
	eps                                                  float64
}

func (j visionJSON) apply(d visionDefaults) (vit.Config, error) {
	get := func(p *int, def int) int {
		if p != nil {
			return *p
		}
		return def
	}
	act := d.act
	if j.HiddenAct != nil {
		act = *j.HiddenAct
	}
	eps := d.eps
	if j.LayerNormEps != nil {
		eps = *j.LayerNormEps
	}
	a, err := visionAct(act)
	if err != nil {
		return vit.Config{}, err
	}
	c := vit.Config{
		Width: get(j.HiddenSize, d.hidden), MLPDim: get(j.IntermediateSize, d.inter),
		Layers: get(j.NumHiddenLayers, d.layers), Heads: get(j.NumAttentionHeads, d.heads),
		Channels: get(j.NumChannels, d.channels), ImageSize: get(j.ImageSize, d.image),
		PatchSize: get(j.PatchSize, d.patch), Act: a, Eps: float32(eps),
	}
	return c, nil
}

// visionAct maps a transformers hidden_act (ACT2FN key) to Loom's.
func visionAct(name string) (nn.Act, error) {
	switch name {
	case "quick_gelu":
		return nn.ActQuickGELU, nil
	case "gelu":
		return nn.ActGELU, nil
	case "gelu_pytorch_tanh", "gelu_new":
		return nn.ActGELUTanh, nil
	}
	return "", fmt.Errorf("hidden_act %q: want quick_gelu, gelu or gelu_pytorch_tanh", name)
}

// visionActName is visionAct's inverse.
func visionActName(a nn.Act) (string, error) {
	switch a {
	case nn.ActQuickGELU:
		return "quick_gelu", nil
	case nn.ActGELU:
		return "gelu", nil
	case nn.ActGELUTanh:
		return "gelu_pytorch_tanh", nil
	}
	return "", fmt.Errorf("activation %q has no transformers name", a)
}

// visionSection returns the vision config inside configJSON: its
// vision_config when it has one (CLIPModel, SiglipModel, Blip2, LLaVA),
// else the whole object. wantTypes are the model_type values the section
// may carry ("" allowed: sub-configs often omit it).
func visionSection(configJSON []byte, layout string, wantTypes ...string) (visionJSON, error) {
	var top struct {
		visionJSON
		VisionConfig json.RawMessage `json:"vision_config"`
	}
	if err := json.Unmarshal(configJSON, &top); err != nil {
		return visionJSON{}, fmt.Errorf("%s config: %w", layout, err)
	}
	j := top.visionJSON
	where := "config"
	if len(top.VisionConfig) > 0 && string(top.VisionConfig) != "null" {
		j = visionJSON{}
		if err := json.Unmarshal(top.VisionConfig, &j); err != nil {
			return visionJSON{}, fmt.Errorf("%s config: vision_config: %w", layout, err)
		}
		where = "vision_config"
	}
	if j.ModelType != "" {
		ok := false
		for _, t := range wantTypes {
			ok = ok || j.ModelType == t
		}
		if !ok {
			return visionJSON{}, fmt.Errorf("%s config: %s model_type %q: want %s", layout, where, j.ModelType, strings.Join(wantTypes, " or "))
		}
	}
	return j, nil
}

// CLIPVisionConfig reads a CLIPVisionModel config.json, or the
// vision_config of a CLIPModel or LLaVA config, into a vit.Config:
// class token, no patch bias, pre_layrnorm, post_layernorm on the pooled
// class token, and transformers' CLIPVisionConfig defaults for absent
// fields (hidden 768, 12 layers and heads, MLP 3072, image 224, patch 32,
// quick_gelu, eps 1e-5).
func CLIPVisionConfig(configJSON []byte) (vit.Config, error) {
	j, err := visionSection(configJSON, "CLIP vision", "clip_vision_model", "clip")
	if err != nil {
		return vit.Config{}, err
	}
	c, err := j.apply(visionDefaults{hidden: 768, inter: 3072, layers: 12, heads: 12, channels: 3, image: 224, patch: 32, act: "quick_gelu", eps: 1e-5})
	if err != nil {
		return vit.Config{}, fmt.Errorf("CLIP vision config: %w", err)
	}
	c.ClassToken, c.PreNorm, c.PostNorm = true, true, vit.PostNormPooled
	if err := c.Validate(); err != nil {
		return vit.Config{}, fmt.Errorf("CLIP vision config: %w", err)
	}
	return c, nil
}

// CLIPVisionConfigJSON writes c as a CLIPVisionModel config.json. c must
// have CLIP's structure (class token, no patch bias, pre-LayerNorm); the
// image size written is the learned position grid's (Grid·PatchSize).
func CLIPVisionConfigJSON(c vit.Config) ([]byte, error) {
	if !c.ClassToken || c.PatchBias || !c.PreNorm || c.Head || c.PostNorm == vit.PostNormAll {
		return nil, fmt.Errorf("CLIP vision config: %+v is not CLIP's structure (class token, no patch bias, pre-LayerNorm, post-LayerNorm on the pooled token only)", c)
	}
	m, err := visionConfigMap(c)
	if err != nil {
		return nil, fmt.Errorf("CLIP vision config: %w", err)
	}
	m["architectures"] = []string{"CLIPVisionModel"}
	m["model_type"] = "clip_vision_model"
	return marshalConfig(m)
}

func visionConfigMap(c vit.Config) (map[string]any, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	act, err := visionActName(c.Act)
	if err != nil {
		return nil, err
	}
	eps := c.Eps
	if eps == 0 {
		eps = 1e-5 // vit.New's default
	}
	return map[string]any{
		"hidden_size": c.Width, "intermediate_size": c.MLPDim, "num_hidden_layers": c.Layers,
		"num_attention_heads": c.Heads, "num_channels": c.Channels, "image_size": c.Grid() * c.PatchSize,
		"patch_size": c.PatchSize, "hidden_act": act, "layer_norm_eps": json.Number(fmt.Sprint(eps)),
		"torch_dtype": "float32",
	}, nil
}

func marshalConfig(m map[string]any) ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// CLIPVisionMapping maps a CLIP vision tower under hfPrefix
// ("vision_model." in CLIPVisionModel and CLIPModel,
// "vision_tower.vision_model." in LLaVA) onto a vit built with c under
// loomPrefix ("vit."). The position_ids buffer older checkpoints saved is
// skipped, and so are the text tower, the projections and logit_scale of a
// whole CLIPModel (at hfPrefix without its "vision_model."). When c has no
// post-LayerNorm the checkpoint's is ignored (LLaVA's features do not use
// it).
func CLIPVisionMapping(c vit.Config, hfPrefix, loomPrefix string) Mapping {
	m := Mapping{Arch: "CLIPVisionModel", Scope: visionScope(loomPrefix)}
	e := func(hf, loom string) {
		m.Entries = append(m.Entries, Entry{HF: hfPrefix + hf, Loom: []string{loomPrefix + loom}})
	}
	e("embeddings.class_embedding", "embeddings.class_embedding")
	e("embeddings.patch_embedding.weight", "embeddings.patch_embedding.weight")
	e("embeddings.position_embedding.weight", "embeddings.position_embedding.weight")
	e("pre_layrnorm.weight", "pre_layrnorm.weight")
	e("pre_layrnorm.bias", "pre_layrnorm.bias")
	m.Entries = append(m.Entries, visionLayers(c.Layers, hfPrefix, loomPrefix)...)
	m.Entries, m.Ignore = visionPostNorm(c, m.Entries, hfPrefix, loomPrefix)
	root := strings.TrimSuffix(hfPrefix, "vision_model.")
	m.Ignore = append(m.Ignore, hfPrefix+"embeddings.position_ids",
		root+"text_model", root+"text_projection", root+"visual_projection", root+"logit_scale")
	return m
}

// visionScope is the Scope of a tower under loomPrefix ("vit." → "vit").
func visionScope(loomPrefix string) []string {
	if s := strings.TrimSuffix(loomPrefix, "."); s != "" {
		return []string{s}
	}
	return nil
}

// visionLayers maps the CLIP-named encoder layers (CLIP and SigLIP).
func visionLayers(layers int, hfPrefix, loomPrefix string) []Entry {
	var out []Entry
	for i := 0; i < layers; i++ {
		n := fmt.Sprintf("encoder.layers.%d.", i)
		for _, mod := range []string{"layer_norm1", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "layer_norm2", "mlp.fc1", "mlp.fc2"} {
			for _, s := range []string{".weight", ".bias"} {
				out = append(out, Entry{HF: hfPrefix + n + mod + s, Loom: []string{loomPrefix + n + mod + s}})
			}
		}
	}
	return out
}

// visionPostNorm adds the post_layernorm entries when c builds one, and
// otherwise returns an Ignore pattern for the checkpoint's.
func visionPostNorm(c vit.Config, es []Entry, hfPrefix, loomPrefix string) ([]Entry, []string) {
	if c.PostNorm == vit.PostNormNone {
		return es, []string{hfPrefix + "post_layernorm"}
	}
	for _, s := range []string{".weight", ".bias"} {
		es = append(es, Entry{HF: hfPrefix + "post_layernorm" + s, Loom: []string{loomPrefix + "post_layernorm" + s}})
	}
	return es, nil
}
