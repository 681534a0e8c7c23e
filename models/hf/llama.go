package hf

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/loomtrain/loom/models/llm"
)

// llamaJSON is the part of a LlamaConfig / MistralConfig / Qwen2Config
// (configuration_llama.py, configuration_qwen2.py) that shapes the
// decoder. Pointers: absent fields take the class defaults.
type llamaJSON struct {
	ModelType    string          `json:"model_type"`
	Vocab        *int            `json:"vocab_size"`
	Hidden       *int            `json:"hidden_size"`
	FFN          *int            `json:"intermediate_size"`
	Layers       *int            `json:"num_hidden_layers"`
	Heads        *int            `json:"num_attention_heads"`
	KVHeads      *int            `json:"num_key_value_heads"`
	HeadDim      *int            `json:"head_dim"`
	Act          *string         `json:"hidden_act"`
	MaxPos       *int            `json:"max_position_embeddings"`
	Eps          *float64        `json:"rms_norm_eps"`
	Tied         *bool           `json:"tie_word_embeddings"`
	Theta        *float64        `json:"rope_theta"`
	RopeScaling  json.RawMessage `json:"rope_scaling"`
	RopeParams   json.RawMessage `json:"rope_parameters"`
	AttnBias     *bool           `json:"attention_bias"`
	MLPBias      *bool           `json:"mlp_bias"`
	SlidingOn    *bool           `json:"use_sliding_window"`
	PartialRot   *float64        `json:"partial_rotary_factor"`
	PretrainedTP *int            `json:"pretraining_tp"`
}

// ropeJSON is rope_scaling (v4) or rope_parameters (v5), whose keys
// modeling_rope_utils.py reads.
type ropeJSON struct {
	RopeType     *string  `json:"rope_type"`
	Type         *string  `json:"type"` // legacy alias of rope_type
	Theta        *float64 `json:"rope_theta"`
	Factor       *float64 `json:"factor"`
	OrigMaxPos   *float64 `json:"original_max_position_embeddings"`
	LowFreq      *float64 `json:"low_freq_factor"`
	HighFreq     *float64 `json:"high_freq_factor"`
	AttnFactor   *float64 `json:"attention_factor"`
	BetaFast     *float64 `json:"beta_fast"`
	BetaSlow     *float64 `json:"beta_slow"`
	Mscale       *float64 `json:"mscale"`
	MscaleAllDim *float64 `json:"mscale_all_dim"`
	Truncate     *bool    `json:"truncate"`
}

func optInt(p *int, def int) int {
	if p != nil {
		return *p
	}
	return def
}

func optFloat(p *float64, def float64) float64 {
	if p != nil {
		return *p
	}
	return def
}

func optBool(p *bool, def bool) bool {
	if p != nil {
		return *p
	}
	return def
}

// llamaDefaults are the class defaults that differ by model_type.
var llamaDefaults = map[string]struct {
	vocab, ffn, maxPos int
	qkvBias            bool
	arch               string
}{
	"llama":   {32000, 11008, 2048, false, "LlamaForCausalLM"},
	"mistral": {32000, 14336, 4096 * 32, false, "MistralForCausalLM"},
	"qwen2":   {151936, 22016, 32768, true, "Qwen2ForCausalLM"},
}

// LlamaConfig reads a LlamaForCausalLM, MistralForCausalLM or
// Qwen2ForCausalLM config.json into Loom's decoder config: sizes, grouped
// KV heads, head_dim, rms_norm_eps, rope_theta and rope_scaling (v4) or
// rope_parameters (v5; "type" is read as "rope_type"), tied embeddings,
// attention_bias (all four projections) and mlp_bias. Qwen2 has q/k/v
// biases (QKVBias), as Qwen2Attention hard-codes. Errors name config.json
// and the field.
//
// Not modelled, so refused: a hidden_act other than silu, Qwen2's
// use_sliding_window, partial_rotary_factor, and the longrope scaling.
// Mistral's sliding_window is not applied: logits are exact up to that
// many tokens (4096 in Mistral-7B-v0.1).
func LlamaConfig(configJSON []byte) (llm.Config, error) {
	var j llamaJSON
	if err := json.Unmarshal(configJSON, &j); err != nil {
		return llm.Config{}, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	mt := j.ModelType
	if mt == "" {
		mt = "llama"
	}
	def, ok := llamaDefaults[mt]
	if !ok {
		return llm.Config{}, fmt.Errorf("%s: model_type %q: want llama, mistral or qwen2", ConfigFile, j.ModelType)
	}
	bad := func(field string, format string, args ...any) (llm.Config, error) {
		return llm.Config{}, fmt.Errorf("%s: %s: %s", ConfigFile, field, fmt.Sprintf(format, args...))
	}
	if act := *orStr(j.Act, "silu"); act != "silu" {
		return bad("hidden_act", "%q: Loom's decoder computes SwiGLU with silu", act)
	}
	if optBool(j.SlidingOn, false) {
		return bad("use_sliding_window", "true: Loom's decoder has no sliding-window attention")
	}
	if j.PartialRot != nil && *j.PartialRot != 1 {
		return bad("partial_rotary_factor", "%g: Loom's decoder rotates the whole head", *j.PartialRot)
	}
	c := llm.Config{
		Kind:    llm.KindLlama,
		Vocab:   optInt(j.Vocab, def.vocab),
		Hidden:  optInt(j.Hidden, 4096),
		FFN:     optInt(j.FFN, def.ffn),
		Layers:  optInt(j.Layers, 32),
		Heads:   optInt(j.Heads, 32),
		MaxPos:  optInt(j.MaxPos, def.maxPos),
		Eps:     float32(optFloat(j.Eps, 1e-6)),
		Tied:    optBool(j.Tied, false),
		QKVBias: def.qkvBias,
		MLPBias: optBool(j.MLPBias, false),
	}
	if !def.qkvBias {
		c.AttnBias = optBool(j.AttnBias, false)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"vocab_size", c.Vocab}, {"hidden_size", c.Hidden}, {"intermediate_size", c.FFN}, {"num_hidden_layers", c.Layers},
		{"num_attention_heads", c.Heads}, {"max_position_embeddings", c.MaxPos}} {
		if f.v <= 0 {
			return bad(f.name, "%d must be positive", f.v)
		}
	}
	c.KVHeads = optInt(j.KVHeads, c.Heads)
	if c.KVHeads <= 0 || c.Heads%c.KVHeads != 0 {
		return bad("num_key_value_heads", "%d must divide num_attention_heads %d", c.KVHeads, c.Heads)
	}
	if c.KVHeads == c.Heads {
		c.KVHeads = 0
	}
	if j.HeadDim != nil && *j.HeadDim != c.Hidden/c.Heads {
		if *j.HeadDim <= 0 || *j.HeadDim%2 != 0 {
			return bad("head_dim", "%d must be positive and even", *j.HeadDim)
		}
		c.HeadDim = *j.HeadDim
	} else if c.Hidden%c.Heads != 0 {
		return bad("num_attention_heads", "%d does not divide hidden_size %d (and there is no head_dim)", c.Heads, c.Hidden)
	}
	if !(c.Eps > 0) {
		return bad("rms_norm_eps", "%g must be positive", optFloat(j.Eps, 0))
	}
	theta, rs, err := readRoPE(j.Theta, j.RopeScaling, j.RopeParams)
	if err != nil {
		return llm.Config{}, err
	}
	c.Theta, c.RoPE = theta, rs
	if err := c.Validate(); err != nil {
		return llm.Config{}, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	return c, nil
}

func orStr(p *string, def string) *string {
	if p != nil {
		return p
	}
	return &def
}

// readRoPE reads rope_theta and rope_scaling (v4) or rope_parameters (v5).
func readRoPE(theta *float64, scaling, params json.RawMessage) (float64, llm.RoPEScaling, error) {
	field := "rope_scaling"
	raw := scaling
	if len(params) > 0 && string(params) != "null" {
		field, raw = "rope_parameters", params
	}
	th := optFloat(theta, 10000)
	var rs llm.RoPEScaling
	if len(raw) == 0 || string(raw) == "null" {
		if !(th > 0) {
			return 0, rs, fmt.Errorf("%s: rope_theta: %g must be positive", ConfigFile, th)
		}
		return th, rs, nil
	}
	var r ropeJSON
	if err := json.Unmarshal(raw, &r); err != nil {
		return 0, rs, fmt.Errorf("%s: %s: %w", ConfigFile, field, err)
	}
	if r.Theta != nil {
		th = *r.Theta
	}
	if !(th > 0) {
		return 0, rs, fmt.Errorf("%s: %s.rope_theta: %g must be positive", ConfigFile, field, th)
	}
	typ := "default"
	if r.RopeType != nil {
		typ = *r.RopeType
	} else if r.Type != nil {
		typ = *r.Type
	}
	switch typ {
	case "default":
		return th, rs, nil
	case llm.RoPELinear, llm.RoPEDynamic, llm.RoPENTK, llm.RoPELlama3, llm.RoPEYarn:
	default:
		return 0, rs, fmt.Errorf("%s: %s.rope_type: %q: Loom supports default, linear, dynamic, ntk, llama3 and yarn", ConfigFile, field, typ)
	}
	rs.Type = typ
	if r.Factor == nil || !(*r.Factor > 0) {
		return 0, rs, fmt.Errorf("%s: %s.factor: %s scaling needs a positive factor", ConfigFile, field, typ)
	}
	rs.Factor = *r.Factor
	rs.OrigMaxPos = int(optFloat(r.OrigMaxPos, 0))
	if typ == llm.RoPELlama3 {
		for _, f := range []struct {
			name string
			p    *float64
		}{{"low_freq_factor", r.LowFreq}, {"high_freq_factor", r.HighFreq}, {"original_max_position_embeddings", r.OrigMaxPos}} {
			if f.p == nil {
				return 0, rs, fmt.Errorf("%s: %s.%s: llama3 scaling needs it", ConfigFile, field, f.name)
			}
		}
		rs.LowFreqFactor, rs.HighFreqFactor = *r.LowFreq, *r.HighFreq
		if !(rs.HighFreqFactor > rs.LowFreqFactor && rs.LowFreqFactor > 0) {
			return 0, rs, fmt.Errorf("%s: %s.high_freq_factor: %g must exceed low_freq_factor %g > 0", ConfigFile, field, rs.HighFreqFactor, rs.LowFreqFactor)
		}
	}
	if typ == llm.RoPEYarn {
		rs.AttnFactor = optFloat(r.AttnFactor, 0)
		rs.BetaFast, rs.BetaSlow = optFloat(r.BetaFast, 0), optFloat(r.BetaSlow, 0)
		rs.Mscale, rs.MscaleAllDim = optFloat(r.Mscale, 0), optFloat(r.MscaleAllDim, 0)
		rs.NoTruncate = !optBool(r.Truncate, true)
	}
	return th, rs, nil
}

// f32JSON turns a float32 into the float64 that prints as its shortest
// decimal (1e-05, not 9.999999747378752e-06).
func f32JSON(v float32) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(v), 'g', -1, 32), 64)
	return f
}

func ropeScalingJSON(r llm.RoPEScaling) map[string]any {
	if r.Type == "" || r.Type == llm.RoPEDefault {
		return nil
	}
	m := map[string]any{"rope_type": r.Type, "factor": r.Factor}
	if r.OrigMaxPos > 0 {
		m["original_max_position_embeddings"] = r.OrigMaxPos
	}
	if r.Type == llm.RoPELlama3 {
		m["low_freq_factor"], m["high_freq_factor"] = r.LowFreqFactor, r.HighFreqFactor
	}
	if r.Type == llm.RoPEYarn {
		for k, v := range map[string]float64{"attention_factor": r.AttnFactor, "beta_fast": r.BetaFast, "beta_slow": r.BetaSlow,
			"mscale": r.Mscale, "mscale_all_dim": r.MscaleAllDim} {
			if v != 0 {
				m[k] = v
			}
		}
		if r.NoTruncate {
			m["truncate"] = false
		}
	}
	return m
}

// LlamaConfigJSON writes the config.json of c for export: a
// LlamaForCausalLM, or a Qwen2ForCausalLM when c has q/k/v biases without
// an o_proj bias. Each extra map is merged over the result (bos/eos ids,
// torch_dtype, a tokenizer's vocabulary fields); the defaults are
// LLaMA's bos 1, eos 2 (Qwen2: none) and torch_dtype float32.
func LlamaConfigJSON(c llm.Config, extra ...map[string]any) ([]byte, error) {
	if c.Kind != "" && c.Kind != llm.KindLlama {
		return nil, fmt.Errorf("LlamaConfigJSON: kind %q is not a LLaMA-style decoder", c.Kind)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	mt, arch := "llama", "LlamaForCausalLM"
	if c.QKVBias && !c.AttnBias {
		mt, arch = "qwen2", "Qwen2ForCausalLM"
	}
	theta, eps, maxPos := c.Theta, c.Eps, c.MaxPos
	if theta == 0 {
		theta = 10000
	}
	if eps == 0 {
		eps = 1e-6
	}
	if maxPos == 0 {
		maxPos = 2048
	}
	kv := c.KVHeads
	if kv == 0 {
		kv = c.Heads
	}
	hd := c.HeadDim
	if hd == 0 {
		hd = c.Hidden / c.Heads
	}
	m := map[string]any{
		"architectures":           []string{arch},
		"model_type":              mt,
		"vocab_size":              c.Vocab,
		"hidden_size":             c.Hidden,
		"intermediate_size":       c.FFN,
		"num_hidden_layers":       c.Layers,
		"num_attention_heads":     c.Heads,
		"num_key_value_heads":     kv,
		"head_dim":                hd,
		"hidden_act":              "silu",
		"max_position_embeddings": maxPos,
		"rms_norm_eps":            f32JSON(eps),
		"rope_theta":              theta,
		"rope_scaling":            ropeScalingJSON(c.RoPE),
		"tie_word_embeddings":     c.Tied,
		"mlp_bias":                c.MLPBias,
		"torch_dtype":             "float32",
	}
	if mt == "llama" {
		m["attention_bias"] = c.AttnBias
		m["bos_token_id"], m["eos_token_id"] = 1, 2
	}
	for _, e := range extra {
		for k, v := range e {
			m[k] = v
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// LlamaMapping maps a LlamaForCausalLM (Mistral, Qwen2: the same names)
// under hfPrefix ("" for a bare LM, "language_model." inside LLaVA) onto
// Loom's decoder built with c under loomPrefix ("llm."). The
// rotary_emb.inv_freq buffers of older checkpoints are skipped.
//
// Tied heads: an untied Loom head reads lm_head.weight or, when the
// checkpoint is tied and omits it, embed_tokens.weight. A tied Loom model
// has no head of its own; a stored lm_head.weight (the duplicate some
// tied checkpoints keep) loads into the shared matrix, and Export writes
// embed_tokens only (NoExport).
//
// Vocabulary padding: when c.Vocab exceeds the checkpoint's vocab_size
// (Loom appends its special tokens), embed_tokens and lm_head copy the
// rows the checkpoint has (PadRows) and the added rows keep their
// initialisation; Plan.RandomInit lists them.
func LlamaMapping(c llm.Config, hfPrefix, loomPrefix string) Mapping {
	arch := "LlamaForCausalLM"
	if c.QKVBias && !c.AttnBias {
		arch = "Qwen2ForCausalLM"
	}
	m := Mapping{Arch: arch, Scope: []string{loomPrefix + "model", loomPrefix + "lm_head"},
		Ignore: []string{hfPrefix + "model.layers.*.self_attn.rotary_emb.inv_freq", hfPrefix + "model.rotary_emb.inv_freq"}}
	e := func(name string, pad bool) {
		m.Entries = append(m.Entries, Entry{HF: hfPrefix + name, Loom: []string{loomPrefix + name}, PadRows: pad})
	}
	e("model.embed_tokens.weight", true)
	for i := 0; i < c.Layers; i++ {
		l := fmt.Sprintf("model.layers.%d.", i)
		e(l+"input_layernorm.weight", false)
		for _, p := range []string{"q", "k", "v", "o"} {
			e(l+"self_attn."+p+"_proj.weight", false)
			if c.AttnBias || (c.QKVBias && p != "o") {
				e(l+"self_attn."+p+"_proj.bias", false)
			}
		}
		e(l+"post_attention_layernorm.weight", false)
		for _, p := range []string{"gate", "up", "down"} {
			e(l+"mlp."+p+"_proj.weight", false)
			if c.MLPBias {
				e(l+"mlp."+p+"_proj.bias", false)
			}
		}
	}
	e("model.norm.weight", false)
	m.Entries = append(m.Entries, headEntry(c.Tied, hfPrefix+"lm_head.weight", hfPrefix+"model.embed_tokens.weight",
		loomPrefix+"lm_head.weight", loomPrefix+"model.embed_tokens.weight", nil))
	return m
}

// headEntry is the lm_head entry of a decoder: untied, the head reads
// lm_head (or the embedding of a tied checkpoint); tied, a stored lm_head
// loads into the shared embedding and is not exported.
func headEntry(tied bool, hfHead, hfEmbed, loomHead, loomEmbed string, alt []string) Entry {
	if tied {
		return Entry{HF: hfHead, Loom: []string{loomEmbed}, Optional: true, NoExport: true, PadRows: true}
	}
	return Entry{HF: hfHead, Alt: append([]string{hfEmbed}, alt...), Loom: []string{loomHead}, PadRows: true}
}
