package hf

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/loomtrain/loom/models"
)

// LlavaForConditionalGeneration (llava-hf/llava-1.5-7b-hf) in the layout of
// transformers' modeling_llava.py. The legacy layout, which llava-hf
// checkpoints are stored in and Export writes:
//
//	vision_tower.vision_model.*                  CLIPVisionModel (clip.go) or SiglipVisionModel
//	multi_modal_projector.linear_1.{weight,bias} [H_lm, H_v]
//	multi_modal_projector.linear_2.{weight,bias} [H_lm, H_lm]
//	language_model.model.*, language_model.lm_head.weight   LlamaForCausalLM (llama.go)
//
// and the layout of transformers ≥ 4.52 (LlavaForConditionalGeneration.
// _checkpoint_conversion_mapping), which import also reads:
//
//	model.vision_tower.*, model.multi_modal_projector.*,
//	model.language_model.* (the decoder's names with no inner "model."), lm_head.weight
//
// onto Loom's LLaVA (models/llava.go): vit.*, mm_projector.0 / .2 (the
// mlp2x_gelu projector, linear_2(gelu(linear_1 x)) with exact GELU) and
// llm.*. HF selects hidden_states[vision_feature_layer] without its class
// token ("default"); Loom's LLaVA reads the penultimate layer's patches
// (vit.PenultimatePatches), so vision_feature_layer must be -2 and the
// strategy "default". The vision tower's post_layernorm is kept (LLaVA
// never uses it) so that an export carries every tensor it read.

// llavaJSON is the part of configuration_llava.py's LlavaConfig Loom reads.
type llavaJSON struct {
	ModelType       string          `json:"model_type"`
	ImageTokenIndex *int            `json:"image_token_index"`
	ImageTokenID    *int            `json:"image_token_id"`
	ProjectorAct    *string         `json:"projector_hidden_act"`
	FeatureLayer    json.RawMessage `json:"vision_feature_layer"`
	FeatureStrategy *string         `json:"vision_feature_select_strategy"`
	ProjectorBias   *bool           `json:"multimodal_projector_bias"`
	VisionConfig    json.RawMessage `json:"vision_config"`
	TextConfig      json.RawMessage `json:"text_config"`
}

// llavaDefaultVision is LlavaConfig's vision_config when config.json has
// none: CLIP ViT-L/14 at 336 px.
const llavaDefaultVision = `{"model_type":"clip_vision_model","hidden_size":1024,"intermediate_size":4096,"patch_size":14,"image_size":336,"num_hidden_layers":24,"num_attention_heads":16,"projection_dim":768}`

// LlavaConfig reads a LlavaForConditionalGeneration config.json into a
// Loom LLaVA config: the vision tower from vision_config (CLIP, or SigLIP
// by its model_type; CLIP-L/14-336 when absent), the decoder from
// text_config (LlamaConfig, tie_word_embeddings included; LLaMA's
// defaults when absent), the mlp2x_gelu
// projector, ImageSize from the tower, and Special.Image from
// image_token_index (alias image_token_id; default 32000). The other
// special ids come from the tokenizer. Refused, as Loom's LLaVA cannot
// compute them: a vision_feature_layer other than -2 (or a list), the
// "full" strategy, a projector activation other than gelu, and a
// projector without biases.
func LlavaConfig(configJSON []byte) (models.Config, error) {
	var j llavaJSON
	if err := json.Unmarshal(configJSON, &j); err != nil {
		return models.Config{}, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	bad := func(field, format string, args ...any) (models.Config, error) {
		return models.Config{}, fmt.Errorf("%s: LLaVA: %s: %s", ConfigFile, field, fmt.Sprintf(format, args...))
	}
	if j.ModelType != "" && j.ModelType != "llava" {
		return bad("model_type", "%q: want llava", j.ModelType)
	}
	vision := []byte(llavaDefaultVision)
	if len(j.VisionConfig) > 0 && string(j.VisionConfig) != "null" {
		vision = j.VisionConfig
	}
	var vt struct {
		ModelType string `json:"model_type"`
	}
	if err := json.Unmarshal(vision, &vt); err != nil {
		return bad("vision_config", "%v", err)
	}
	var cfg models.Config
	var err error
	switch vt.ModelType {
	case "", "clip_vision_model":
		cfg.ViT, err = CLIPVisionConfig(vision)
	case "siglip_vision_model":
		cfg.ViT, err = SiglipVisionConfig(vision)
		cfg.ViT.Head = false // LLaVA builds SiglipVisionModel's tower without the head
	default:
		return bad("vision_config.model_type", "%q: want clip_vision_model or siglip_vision_model", vt.ModelType)
	}
	if err != nil {
		return models.Config{}, fmt.Errorf("%s: LLaVA vision_config: %w", ConfigFile, err)
	}
	text := []byte("{}")
	if len(j.TextConfig) > 0 && string(j.TextConfig) != "null" {
		text = j.TextConfig
	}
	if cfg.LLM, err = LlamaConfig(text); err != nil {
		return models.Config{}, fmt.Errorf("LLaVA text_config: %w", err)
	}
	if len(j.FeatureLayer) > 0 && string(j.FeatureLayer) != "null" {
		var layer int
		if err := json.Unmarshal(j.FeatureLayer, &layer); err != nil {
			return bad("vision_feature_layer", "%s: Loom's LLaVA reads one layer, -2", j.FeatureLayer)
		}
		// hidden_states has Layers+1 entries: -2 and Layers-1 are the same.
		if layer != -2 && layer != cfg.ViT.Layers-1 {
			return bad("vision_feature_layer", "%d: Loom's LLaVA reads the penultimate layer (-2)", layer)
		}
	}
	if s := j.FeatureStrategy; s != nil && *s != "default" {
		return bad("vision_feature_select_strategy", "%q: Loom's LLaVA drops the class token (\"default\")", *s)
	}
	if a := j.ProjectorAct; a != nil && *a != "gelu" {
		return bad("projector_hidden_act", "%q: Loom's mlp2x_gelu projector uses exact GELU (\"gelu\")", *a)
	}
	if b := j.ProjectorBias; b != nil && !*b {
		return bad("multimodal_projector_bias", "false: Loom's projector has biases")
	}
	image := 32000
	if j.ImageTokenIndex != nil {
		image = *j.ImageTokenIndex
	} else if j.ImageTokenID != nil {
		image = *j.ImageTokenID
	}
	if image < 0 || image >= cfg.LLM.Vocab {
		return bad("image_token_index", "%d is outside the vocabulary of %d", image, cfg.LLM.Vocab)
	}
	cfg.Family, cfg.Projector = models.LLaVA, models.ProjMLP2xGELU
	cfg.ImageSize = cfg.ViT.ImageSize
	cfg.Special.Image = int32(image)
	if err := cfg.Validate(); err != nil {
		return models.Config{}, fmt.Errorf("%s: LLaVA: %w", ConfigFile, err)
	}
	return cfg, nil
}

// LlavaConfigJSON writes cfg as a LlavaForConditionalGeneration
// config.json: vision_config (CLIP or SigLIP), text_config (LLaMA), the
// projector settings Loom's mlp2x_gelu projector computes, and
// image_token_index = Special.Image.
func LlavaConfigJSON(cfg models.Config) ([]byte, error) {
	if cfg.Family != models.LLaVA && cfg.Family != models.VILA {
		return nil, fmt.Errorf("LLaVA config: family %s is not LLaVA", cfg.Family)
	}
	if cfg.Projector != models.ProjMLP2xGELU {
		return nil, fmt.Errorf("LLaVA config: projector %q: LlavaForConditionalGeneration has only %s", cfg.Projector, models.ProjMLP2xGELU)
	}
	var vision []byte
	var err error
	if cfg.ViT.ClassToken {
		vision, err = CLIPVisionConfigJSON(cfg.ViT)
	} else {
		vision, err = SiglipVisionConfigJSON(cfg.ViT)
	}
	if err != nil {
		return nil, fmt.Errorf("LLaVA config: %w", err)
	}
	text, err := LlamaConfigJSON(cfg.LLM)
	if err != nil {
		return nil, fmt.Errorf("LLaVA config: %w", err)
	}
	var vm, tm map[string]any
	if err := json.Unmarshal(vision, &vm); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(text, &tm); err != nil {
		return nil, err
	}
	delete(vm, "architectures")
	delete(tm, "architectures")
	g := cfg.ImageSize / cfg.ViT.PatchSize
	return marshalConfig(map[string]any{
		"architectures": []string{"LlavaForConditionalGeneration"}, "model_type": "llava",
		"image_token_index": cfg.Special.Image, "projector_hidden_act": "gelu",
		"vision_feature_layer": -2, "vision_feature_select_strategy": "default",
		"multimodal_projector_bias": true, "image_seq_length": g * g,
		"tie_word_embeddings": cfg.LLM.Tied, "torch_dtype": "float32",
		"vision_config": vm, "text_config": tm,
	})
}

// LlavaMapping maps a LlavaForConditionalGeneration checkpoint onto Loom's
// LLaVA built from cfg (vit.*, mm_projector.*, llm.*). Entries are in the
// legacy layout, which Export writes; each also accepts the ≥ 4.52 name
// (Entry.Alt), so either layout imports.
func LlavaMapping(cfg models.Config) (Mapping, error) {
	if cfg.Projector != models.ProjMLP2xGELU {
		return Mapping{}, fmt.Errorf("LLaVA: projector %q: LlavaForConditionalGeneration's multi_modal_projector is %s", cfg.Projector, models.ProjMLP2xGELU)
	}
	tower := CLIPVisionMapping(cfg.ViT, "vision_tower.vision_model.", "vit.")
	if !cfg.ViT.ClassToken {
		tower = SiglipVisionMapping(cfg.ViT, "vision_tower.vision_model.", "vit.")
	}
	proj := Mapping{Scope: []string{"mm_projector"}}
	for i, l := range []string{"linear_1", "linear_2"} {
		for _, s := range []string{".weight", ".bias"} {
			proj.Entries = append(proj.Entries, Entry{HF: "multi_modal_projector." + l + s, Loom: []string{fmt.Sprintf("mm_projector.%d%s", 2*i, s)}})
		}
	}
	m := Join("LlavaForConditionalGeneration", tower, proj, LlamaMapping(cfg.LLM, "language_model.", "llm."))
	for i := range m.Entries {
		e := &m.Entries[i]
		names := append([]string{e.HF}, e.Alt...)
		for _, n := range names {
			if nn := llavaNewName(n); nn != n {
				e.Alt = append(e.Alt, nn)
			}
		}
	}
	for _, p := range m.Ignore {
		if np := llavaNewName(p); np != p {
			m.Ignore = append(m.Ignore, np)
		}
	}
	return m, nil
}

// llavaNewName is the ≥ 4.52 name of a legacy LLaVA tensor name (or
// pattern): the inverse of _checkpoint_conversion_mapping's regexes.
func llavaNewName(n string) string {
	for _, r := range [][2]string{
		{"language_model.model.", "model.language_model."},
		{"language_model.lm_head.", "lm_head."},
		{"vision_tower.", "model.vision_tower."},
		{"multi_modal_projector.", "model.multi_modal_projector."},
	} {
		if strings.HasPrefix(n, r[0]) {
			return r[1] + strings.TrimPrefix(n, r[0])
		}
	}
	return n
}
