package hf

import (
	"encoding/json"
	"fmt"

	"github.com/loomtrain/loom/models/llm"
)

// optJSON is the part of an OPTConfig (configuration_opt.py) that shapes
// the decoder.
type optJSON struct {
	ModelType      string  `json:"model_type"`
	Vocab          *int    `json:"vocab_size"`
	Hidden         *int    `json:"hidden_size"`
	Layers         *int    `json:"num_hidden_layers"`
	FFN            *int    `json:"ffn_dim"`
	Heads          *int    `json:"num_attention_heads"`
	MaxPos         *int    `json:"max_position_embeddings"`
	PreLN          *bool   `json:"do_layer_norm_before"`
	RemoveFinalLN  *bool   `json:"_remove_final_layer_norm"`
	EmbedDim       *int    `json:"word_embed_proj_dim"`
	Act            *string `json:"activation_function"`
	EnableBias     *bool   `json:"enable_bias"`
	ElementwiseAff *bool   `json:"layer_norm_elementwise_affine"`
	Tied           *bool   `json:"tie_word_embeddings"`
}

// OPTConfig reads an OPTForCausalLM config.json (facebook/opt-*, BLIP-2's
// decoder) into Loom's decoder config with Kind "opt": sizes (hidden_size
// is d_model), ffn_dim, max_position_embeddings, do_layer_norm_before
// (false: PostLN, as opt-350m), word_embed_proj_dim (project_in/out when
// it differs from hidden_size) and tie_word_embeddings (default true).
// LayerNorm eps is nn.LayerNorm's 1e-5, which OPT does not configure.
// Refused, naming config.json and the field: an activation other than
// relu, enable_bias or layer_norm_elementwise_affine false, and
// _remove_final_layer_norm.
func OPTConfig(configJSON []byte) (llm.Config, error) {
	var j optJSON
	if err := json.Unmarshal(configJSON, &j); err != nil {
		return llm.Config{}, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	if j.ModelType != "" && j.ModelType != "opt" {
		return llm.Config{}, fmt.Errorf("%s: model_type %q, want \"opt\"", ConfigFile, j.ModelType)
	}
	bad := func(field, format string, args ...any) (llm.Config, error) {
		return llm.Config{}, fmt.Errorf("%s: %s: %s", ConfigFile, field, fmt.Sprintf(format, args...))
	}
	if act := *orStr(j.Act, "relu"); act != "relu" {
		return bad("activation_function", "%q: Loom's OPT decoder computes relu", act)
	}
	if !optBool(j.EnableBias, true) {
		return bad("enable_bias", "false: Loom's OPT decoder has biases on every linear layer")
	}
	if !optBool(j.ElementwiseAff, true) {
		return bad("layer_norm_elementwise_affine", "false: Loom's OPT LayerNorms are affine")
	}
	if optBool(j.RemoveFinalLN, false) {
		return bad("_remove_final_layer_norm", "true: not supported")
	}
	c := llm.Config{
		Kind:   llm.KindOPT,
		Vocab:  optInt(j.Vocab, 50272),
		Hidden: optInt(j.Hidden, 768),
		Layers: optInt(j.Layers, 12),
		FFN:    optInt(j.FFN, 3072),
		Heads:  optInt(j.Heads, 12),
		MaxPos: optInt(j.MaxPos, 2048),
		Eps:    1e-5,
		Tied:   optBool(j.Tied, true),
		PostLN: !optBool(j.PreLN, true),
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"vocab_size", c.Vocab}, {"hidden_size", c.Hidden}, {"num_hidden_layers", c.Layers}, {"ffn_dim", c.FFN},
		{"num_attention_heads", c.Heads}, {"max_position_embeddings", c.MaxPos}} {
		if f.v <= 0 {
			return bad(f.name, "%d must be positive", f.v)
		}
	}
	if c.Hidden%c.Heads != 0 {
		return bad("num_attention_heads", "%d does not divide hidden_size %d", c.Heads, c.Hidden)
	}
	if p := optInt(j.EmbedDim, c.Hidden); p <= 0 {
		return bad("word_embed_proj_dim", "%d must be positive", p)
	} else if p != c.Hidden {
		c.EmbedDim = p
	}
	if err := c.Validate(); err != nil {
		return llm.Config{}, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	return c, nil
}

// OPTConfigJSON writes the config.json of an OPT decoder for export.
// Each extra map is merged over the result; the defaults are the hub
// files' bos 2, eos 2, pad 1 and torch_dtype float32.
func OPTConfigJSON(c llm.Config, extra ...map[string]any) ([]byte, error) {
	if c.Kind != llm.KindOPT {
		return nil, fmt.Errorf("OPTConfigJSON: kind %q is not OPT", c.Kind)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	p := c.EmbedDim
	if p == 0 {
		p = c.Hidden
	}
	m := map[string]any{
		"architectures":                 []string{"OPTForCausalLM"},
		"model_type":                    "opt",
		"vocab_size":                    c.Vocab,
		"hidden_size":                   c.Hidden,
		"num_hidden_layers":             c.Layers,
		"ffn_dim":                       c.FFN,
		"num_attention_heads":           c.Heads,
		"max_position_embeddings":       c.MaxPos,
		"do_layer_norm_before":          !c.PostLN,
		"word_embed_proj_dim":           p,
		"activation_function":           "relu",
		"enable_bias":                   true,
		"layer_norm_elementwise_affine": true,
		"tie_word_embeddings":           c.Tied,
		"bos_token_id":                  2,
		"eos_token_id":                  2,
		"pad_token_id":                  1,
		"torch_dtype":                   "float32",
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

// OPTMapping maps an OPTForCausalLM under hfPrefix onto Loom's OPT decoder
// built with c under loomPrefix. transformers names the decoder
// model.decoder.*, but the hub's facebook/opt-* files store it without
// the base-model prefix (decoder.*): each entry accepts that name as an
// Alt. The head is tied by default (see LlamaMapping for tied heads and
// vocabulary padding, which work the same way).
func OPTMapping(c llm.Config, hfPrefix, loomPrefix string) Mapping {
	m := Mapping{Arch: "OPTForCausalLM", Scope: []string{loomPrefix + "model", loomPrefix + "lm_head"}}
	e := func(name string, pad bool) {
		m.Entries = append(m.Entries, Entry{HF: hfPrefix + "model.decoder." + name, Alt: []string{hfPrefix + "decoder." + name},
			Loom: []string{loomPrefix + "model.decoder." + name}, PadRows: pad})
	}
	e("embed_tokens.weight", true)
	e("embed_positions.weight", false)
	if c.EmbedDim != 0 && c.EmbedDim != c.Hidden {
		e("project_in.weight", false)
		e("project_out.weight", false)
	}
	if !c.PostLN {
		e("final_layer_norm.weight", false)
		e("final_layer_norm.bias", false)
	}
	for i := 0; i < c.Layers; i++ {
		l := fmt.Sprintf("layers.%d.", i)
		for _, n := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
			"self_attn_layer_norm", "fc1", "fc2", "final_layer_norm"} {
			e(l+n+".weight", false)
			e(l+n+".bias", false)
		}
	}
	m.Entries = append(m.Entries, headEntry(c.Tied, hfPrefix+"lm_head.weight", hfPrefix+"model.decoder.embed_tokens.weight",
		loomPrefix+"lm_head.weight", loomPrefix+"model.decoder.embed_tokens.weight", []string{hfPrefix + "decoder.embed_tokens.weight"}))
	return m
}
