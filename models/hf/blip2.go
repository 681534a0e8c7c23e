package hf

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/models/llm"
	"github.com/loomtrain/loom/models/qformer"
	"github.com/loomtrain/loom/models/vit"
)

// blip2QFormerJSON is configuration_blip_2.py's Blip2QFormerConfig, the
// "qformer_config" of a Blip2Config.
type blip2QFormerJSON struct {
	Vocab        *int     `json:"vocab_size"`
	Hidden       *int     `json:"hidden_size"`
	Layers       *int     `json:"num_hidden_layers"`
	Heads        *int     `json:"num_attention_heads"`
	Intermediate *int     `json:"intermediate_size"`
	Act          *string  `json:"hidden_act"`
	Dropout      *float64 `json:"hidden_dropout_prob"`
	MaxPos       *int     `json:"max_position_embeddings"`
	Eps          *float64 `json:"layer_norm_eps"`
	PosType      *string  `json:"position_embedding_type"`
	CrossFreq    *int     `json:"cross_attention_frequency"`
	EncoderWidth *int     `json:"encoder_hidden_size"`
	TextInput    bool     `json:"use_qformer_text_input"`
}

// blip2JSON is the part of a Blip2Config the Q-Former needs.
type blip2JSON struct {
	ModelType string           `json:"model_type"`
	Queries   *int             `json:"num_query_tokens"`
	QFormer   blip2QFormerJSON `json:"qformer_config"`
	Vision    struct {
		Hidden *int `json:"hidden_size"`
	} `json:"vision_config"`
	Text json.RawMessage `json:"text_config"`
}

// Blip2QFormerConfig reads a Blip2ForConditionalGeneration config.json
// (configuration_blip_2.py; absent fields take Blip2QFormerConfig's
// defaults, those of BERT-base) into the Q-Former's sizes: hidden, layers,
// heads, intermediate, max positions, LayerNorm eps, hidden dropout,
// vocab_size (as is: the [DEC] row is already counted where a checkpoint
// has word embeddings), cross_attention_frequency, num_query_tokens, and
// VisionWidth = vision_config.hidden_size (Blip2Config overwrites
// encoder_hidden_size with it; 1408 by default). base keeps EmbedDim,
// TextSide and Objectives: the text FFN is in the checkpoint only with
// use_qformer_text_input, which Blip2ForConditionalGeneration leaves off.
func Blip2QFormerConfig(configJSON []byte, base qformer.Config) (qformer.Config, error) {
	var j blip2JSON
	if err := json.Unmarshal(configJSON, &j); err != nil {
		return qformer.Config{}, fmt.Errorf("blip-2 config: %w", err)
	}
	if j.ModelType != "" && j.ModelType != "blip-2" {
		return qformer.Config{}, fmt.Errorf("blip-2 config: model_type %q, want \"blip-2\"", j.ModelType)
	}
	q := j.QFormer
	if act := qfStr(q.Act, "gelu"); act != "gelu" {
		return qformer.Config{}, fmt.Errorf("blip-2 config: qformer_config.hidden_act %q: the Q-Former computes exact (erf) GELU, \"gelu\"", act)
	}
	if pt := qfStr(q.PosType, "absolute"); pt != "absolute" {
		return qformer.Config{}, fmt.Errorf("blip-2 config: qformer_config.position_embedding_type %q: the Q-Former has absolute positions only", pt)
	}
	c := base
	c.Vocab = qfInt(q.Vocab, 30522)
	c.Hidden = qfInt(q.Hidden, 768)
	c.Layers = qfInt(q.Layers, 12)
	c.Heads = qfInt(q.Heads, 12)
	c.Intermediate = qfInt(q.Intermediate, 3072)
	c.MaxPos = qfInt(q.MaxPos, 512)
	c.Eps = float32(qfFloat(q.Eps, 1e-12))
	c.Dropout = float32(qfFloat(q.Dropout, 0.1))
	c.CrossFreq = qfInt(q.CrossFreq, 2)
	c.Queries = qfInt(j.Queries, 32)
	c.VisionWidth = qfInt(j.Vision.Hidden, qfInt(q.EncoderWidth, 1408))
	if err := c.Validate(); err != nil {
		return qformer.Config{}, fmt.Errorf("blip-2 config: %w", err)
	}
	return c, nil
}

// Blip2QFormerMapping maps the Q-Former of a Blip2ForConditionalGeneration
// checkpoint (modeling_blip_2.py; HF names relative to the whole model,
// after hfPrefix) onto the Q-Former qformer.New(p, rng, "qformer", c)
// builds under loomPrefix ("qformer."):
//
//   - query_tokens [1, Queries, Hidden] → query_tokens;
//   - qformer.layernorm → embeddings.LayerNorm (LAVIS's
//     Qformer.bert.embeddings.LayerNorm, which HF applies to the queries);
//   - qformer.encoder.layer.N.attention.attention.{query,key,value} →
//     layer.N.attention.* (LAVIS's attention.self, renamed by HF), and
//     attention.output.{dense,LayerNorm};
//   - crossattention.attention.* and crossattention.output.* on the layers
//     with N % CrossFreq == 0;
//   - intermediate_query / output_query;
//   - with TextSide, intermediate / output when the checkpoint has them
//     (saved with use_qformer_text_input; otherwise the text FFN keeps its
//     initialisation and Plan.RandomInit lists it); without TextSide they
//     are ignored if present (LAVIS's stage 2 deletes them).
//
// Blip2ForConditionalGeneration has no Q-Former word or position
// embeddings and no stage-1 heads: with TextSide or Objectives those stay
// at their initialisation and Plan.RandomInit lists them (Scope is the
// Q-Former).
func Blip2QFormerMapping(c qformer.Config, hfPrefix, loomPrefix string) Mapping {
	L := loomPrefix
	m := Mapping{Arch: "Blip2QFormerModel", Scope: qformerScope(loomPrefix)}
	pair := func(hf, loom string) {
		for _, s := range []string{".weight", ".bias"} {
			m.Entries = append(m.Entries, Entry{HF: hf + s, Loom: []string{L + loom + s}})
		}
	}
	m.Entries = append(m.Entries, Entry{HF: "query_tokens", Loom: []string{L + "query_tokens"}, HFShape: []int{1, c.Queries, c.Hidden}})
	pair("qformer.layernorm", "embeddings.LayerNorm")
	for i := 0; i < c.Layers; i++ {
		h := fmt.Sprintf("qformer.encoder.layer.%d.", i)
		l := fmt.Sprintf("layer.%d.", i)
		blocks := []string{"attention"}
		if c.HasCross(i) {
			blocks = append(blocks, "crossattention")
		}
		for _, b := range blocks {
			for _, s := range []string{"query", "key", "value"} {
				pair(h+b+".attention."+s, l+b+"."+s)
			}
			pair(h+b+".output.dense", l+b+".output.dense")
			pair(h+b+".output.LayerNorm", l+b+".output.LayerNorm")
		}
		ffns := []string{"_query"}
		if c.TextSide {
			ffns = append(ffns, "")
		}
		for _, f := range ffns {
			from := len(m.Entries)
			pair(h+"intermediate"+f+".dense", l+"intermediate"+f+".dense")
			pair(h+"output"+f+".dense", l+"output"+f+".dense")
			pair(h+"output"+f+".LayerNorm", l+"output"+f+".LayerNorm")
			for k := from; f == "" && k < len(m.Entries); k++ {
				m.Entries[k].Optional = true
			}
		}
	}
	if !c.TextSide {
		m.Ignore = append(m.Ignore, "qformer.encoder.layer.*.intermediate.**", "qformer.encoder.layer.*.output.**")
	}
	return m.Prefixed(hfPrefix)
}

// qformerScope is the Scope of a Q-Former under loomPrefix ("qformer." →
// "qformer", its whole subtree).
func qformerScope(loomPrefix string) []string {
	return []string{strings.TrimSuffix(loomPrefix, ".")}
}

// Blip2Config reads a Blip2ForConditionalGeneration config.json into a
// BLIP-2 stage-2 models.Config: the vision tower from vision_config
// (EVAVisionConfig, built without its post_layernorm, which is Loom's
// ln_vision), the Q-Former from qformer_config and num_query_tokens
// (Blip2QFormerConfig; EmbedDim 256, LAVIS's ITC size, used only if the
// config is turned into stage 1), and the language model from
// text_config: OPT (OPTConfig, llm Kind "opt") or a LLaMA-style decoder
// (LlamaConfig). T5 (use_decoder_only_language_model false) is refused.
// ImageSize is the vision image_size. Special tokens are not in config.json:
// set them from the tokenizer (Config.WithTokenizer).
//
// Loom's ln_vision has eps 1e-5 (LAVIS's nn.LayerNorm default), whatever
// vision_config.layer_norm_eps says for post_layernorm.
func Blip2Config(configJSON []byte) (models.Config, error) {
	var j blip2JSON
	if err := json.Unmarshal(configJSON, &j); err != nil {
		return models.Config{}, fmt.Errorf("blip-2 config: %w", err)
	}
	if j.ModelType != "blip-2" {
		return models.Config{}, fmt.Errorf("blip-2 config: model_type %q, want \"blip-2\"", j.ModelType)
	}
	v, err := EVAVisionConfig(configJSON)
	if err != nil {
		return models.Config{}, err
	}
	v.PostNorm = vit.PostNormNone
	q, err := Blip2QFormerConfig(configJSON, qformer.Config{EmbedDim: 256})
	if err != nil {
		return models.Config{}, err
	}
	if len(j.Text) == 0 || string(j.Text) == "null" {
		return models.Config{}, fmt.Errorf("blip-2 config: no text_config")
	}
	mt, err := ModelType(j.Text)
	if err != nil {
		return models.Config{}, fmt.Errorf("blip-2 config: text_config: %w", err)
	}
	var l llm.Config
	switch mt {
	case "opt":
		l, err = OPTConfig(j.Text)
	case "llama":
		l, err = LlamaConfig(j.Text)
	default:
		return models.Config{}, fmt.Errorf("blip-2 config: text_config model_type %q: Loom's BLIP-2 has a decoder-only LLM, OPT or LLaMA", mt)
	}
	if err != nil {
		return models.Config{}, fmt.Errorf("blip-2 config: text_config: %w", err)
	}
	if l.EmbedDim != 0 && l.EmbedDim != l.Hidden {
		// HF concatenates language_projection's [.., hidden_size] outputs
		// with the [.., word_embed_proj_dim] token embeddings.
		return models.Config{}, fmt.Errorf("blip-2 config: text_config word_embed_proj_dim %d differs from hidden_size %d: the soft prompts would not fit the token embeddings", l.EmbedDim, l.Hidden)
	}
	c := models.Config{Family: models.BLIP2, Stage: 2, ViT: v, LLM: l, QFormer: q, ImageSize: v.ImageSize}
	if err := c.Validate(); err != nil {
		return models.Config{}, fmt.Errorf("blip-2 config: %w", err)
	}
	return c, nil
}

// Blip2Mapping maps a whole Blip2ForConditionalGeneration checkpoint (names
// after hfPrefix) onto Loom's BLIP-2 model built from cfg (models.New):
//
//	vision_model.*               → vit.* (EVAVisionMapping)
//	vision_model.post_layernorm  → ln_vision (LAVIS's name; HF renamed it)
//	query_tokens, qformer.*      → qformer.* (Blip2QFormerMapping)
//	language_projection          → llm_proj (LAVIS opt_proj)
//	language_model.*             → llm.* (OPTMapping or LlamaMapping, by
//	                               cfg.LLM.Kind; the tied lm_head absent)
//
// A stage-1 model (no LLM) takes the vision tower and the Q-Former and
// ignores the projection and the language model; its text side and heads
// are not in the checkpoint and Plan.RandomInit lists them.
func Blip2Mapping(cfg models.Config, hfPrefix string) (Mapping, error) {
	if cfg.Family != models.BLIP2 {
		return Mapping{}, fmt.Errorf("blip-2 mapping: a %s model; Blip2ForConditionalGeneration is BLIP-2's layout", cfg.Family)
	}
	if cfg.ViT.PostNorm != vit.PostNormNone {
		return Mapping{}, fmt.Errorf("blip-2 mapping: the ViT has its own post-LayerNorm (%q); BLIP-2's is ln_vision", cfg.ViT.PostNorm)
	}
	own := Mapping{Scope: []string{"ln_vision"}}
	for _, s := range []string{".weight", ".bias"} {
		own.Entries = append(own.Entries, Entry{HF: "vision_model.post_layernorm" + s, Loom: []string{"ln_vision" + s}})
	}
	parts := []Mapping{EVAVisionMapping(cfg.ViT, "vision_model.", "vit."), Blip2QFormerMapping(cfg.QFormerConfig(), "", "qformer.")}
	if cfg.Stage == 2 {
		own.Scope = append(own.Scope, "llm_proj")
		for _, s := range []string{".weight", ".bias"} {
			own.Entries = append(own.Entries, Entry{HF: "language_projection" + s, Loom: []string{"llm_proj" + s}})
		}
		switch cfg.LLM.Kind {
		case llm.KindOPT:
			parts = append(parts, OPTMapping(cfg.LLM, "language_model.", "llm."))
		case "", llm.KindLlama:
			parts = append(parts, LlamaMapping(cfg.LLM, "language_model.", "llm."))
		default:
			return Mapping{}, fmt.Errorf("blip-2 mapping: LLM kind %q", cfg.LLM.Kind)
		}
	} else {
		own.Ignore = append(own.Ignore, "language_projection", "language_model")
	}
	return Join("Blip2ForConditionalGeneration", append(parts, own)...).Prefixed(hfPrefix), nil
}

// Blip2ConfigJSON writes the config.json of a BLIP-2 stage-2 model as a
// Blip2ForConditionalGeneration: vision_config (EVAVisionConfigJSON, its
// layer_norm_eps the ViT's), qformer_config, num_query_tokens and
// text_config (OPTConfigJSON or LlamaConfigJSON).
func Blip2ConfigJSON(cfg models.Config) ([]byte, error) {
	if cfg.Family != models.BLIP2 || cfg.Stage != 2 {
		return nil, fmt.Errorf("blip-2 config: a %s stage-%d model; Blip2ForConditionalGeneration is BLIP-2 stage 2", cfg.Family, cfg.Stage)
	}
	v, err := EVAVisionConfigJSON(cfg.ViT)
	if err != nil {
		return nil, err
	}
	var t []byte
	if cfg.LLM.Kind == llm.KindOPT {
		t, err = OPTConfigJSON(cfg.LLM)
	} else {
		t, err = LlamaConfigJSON(cfg.LLM)
	}
	if err != nil {
		return nil, err
	}
	q := cfg.QFormer
	eps := q.Eps
	if eps == 0 {
		eps = 1e-12
	}
	out := map[string]any{
		"architectures":                   []string{"Blip2ForConditionalGeneration"},
		"model_type":                      "blip-2",
		"num_query_tokens":                q.Queries,
		"initializer_factor":              1.0,
		"initializer_range":               0.02,
		"use_decoder_only_language_model": true,
		"tie_word_embeddings":             cfg.LLM.Tied,
		"vision_config":                   json.RawMessage(v),
		"text_config":                     json.RawMessage(t),
		"qformer_config": map[string]any{
			"model_type": "blip_2_qformer", "vocab_size": q.Vocab, "hidden_size": q.Hidden,
			"num_hidden_layers": q.Layers, "num_attention_heads": q.Heads, "intermediate_size": q.Intermediate,
			"hidden_act": "gelu", "hidden_dropout_prob": q.Dropout, "attention_probs_dropout_prob": q.Dropout,
			"max_position_embeddings": q.MaxPos, "layer_norm_eps": shortF32(eps), "initializer_range": 0.02,
			"pad_token_id": 0, "position_embedding_type": "absolute",
			"cross_attention_frequency": q.CrossFreq, "encoder_hidden_size": q.VisionWidth,
		},
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// shortF32 is v as the float64 its shortest decimal names (1e-12, not
// the float32's 9.9999999600419720025e-13).
func shortF32(v float32) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(v), 'g', -1, 32), 64)
	return f
}
