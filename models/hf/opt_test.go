package hf

import (
	"strings"
	"testing"
)

// TestOPTAgainstPyTorch: a pre-LN OPT in F16 with the hub's unprefixed
// decoder.* keys, and a post-LN OPT with project_in/out (opt-350m's
// layout) under model.decoder.*, load through Open → OPTConfig → llm.New
// → Load and match transformers' OPTForCausalLM forward within logitTol.
func TestOPTAgainstPyTorch(t *testing.T) {
	for _, name := range []string{"opt_preln", "opt_350m"} {
		t.Run(name, func(t *testing.T) {
			m, _, _ := loadDecoder(t, name, OPTConfig, OPTMapping)
			compareLogits(t, name, m)
		})
	}
}

func TestOPTConfigErrors(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"model_type": "llama"}`, "config.json: model_type"},
		{`{"activation_function": "gelu"}`, "config.json: activation_function"},
		{`{"enable_bias": false}`, "config.json: enable_bias"},
		{`{"hidden_size": 30, "num_attention_heads": 4}`, "config.json: num_attention_heads"},
		{`{"word_embed_proj_dim": -1}`, "config.json: word_embed_proj_dim"},
		{`{"max_position_embeddings": 0}`, "config.json: max_position_embeddings"},
	} {
		_, err := OPTConfig([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OPTConfig(%s) = %v, want an error containing %q", tc.json, err, tc.want)
		}
	}
	c, err := OPTConfig([]byte(`{"model_type": "opt"}`))
	if err != nil || c.Hidden != 768 || c.Vocab != 50272 || !c.Tied || c.PostLN || c.Eps != 1e-5 {
		t.Errorf("OPTConfig defaults = %+v, %v", c, err)
	}
}
