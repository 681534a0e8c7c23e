package hf

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loomtrain/loom/models/llm"
	"github.com/loomtrain/loom/models/nn"
)

// refLogits is a reference_logits.json written by gen_llama.py/gen_opt.py.
type refLogits struct {
	Cases []struct {
		Tokens  []int32     `json:"tokens"`
		Pos     []int32     `json:"pos"`
		InvFreq []float64   `json:"inv_freq"`
		Logits  [][]float64 `json:"logits"`
	} `json:"cases"`
}

// logitTol is the bound on |Loom − PyTorch| per logit (float32 forward on
// both sides; the logits are O(1)).
const logitTol = 1e-5

// loadDecoder opens testdata/<name>, reads its config with read, builds
// the decoder under "llm." and loads the checkpoint through mapping.
func loadDecoder(t *testing.T, name string, read func([]byte) (llm.Config, error),
	mapping func(llm.Config, string, string) Mapping) (*llm.Model, *nn.Params, *Plan) {
	t.Helper()
	ck, err := Open(context.Background(), Dir(filepath.Join("testdata", name)))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := read(ck.Config())
	if err != nil {
		t.Fatal(err)
	}
	p := nn.NewParams()
	m, err := llm.New(p, nn.Rng(1), "llm.", cfg)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Load(context.Background(), ck, mapping(cfg, "", "llm."), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.RandomInit) > 0 {
		t.Fatalf("%s: parameters left at their initialisation: %v", name, plan.RandomInit)
	}
	return m, p, plan
}

func compareLogits(t *testing.T, name string, m *llm.Model) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name, "reference_logits.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref refLogits
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	v := m.Cfg.Vocab
	for ci, c := range ref.Cases {
		x := m.EmbedTokens(nil, c.Tokens, 1, len(c.Tokens))
		got := m.Logits(nil, m.Forward(nil, x, llm.Layout{Pos: c.Pos}))
		worst := 0.0
		for i, row := range c.Logits {
			for j, want := range row {
				worst = max(worst, math.Abs(float64(got.Data[i*v+j])-want))
			}
		}
		if worst > logitTol {
			t.Errorf("%s case %d (positions %v): max |Δlogit| = %.3g against PyTorch, want ≤ %g", name, ci, c.Pos, worst, logitTol)
		} else {
			t.Logf("%s case %d: max |Δlogit| = %.3g", name, ci, worst)
		}
		if c.InvFreq != nil && m.Cfg.Kind != llm.KindOPT {
			maxPos := int32(0)
			for _, p := range c.Pos {
				maxPos = max(maxPos, p)
			}
			inv, _ := m.Cfg.RoPE.InvFreq(m.Cfg.Theta, len(c.InvFreq)*2, m.Cfg.MaxPos, int(maxPos)+1)
			for i, want := range c.InvFreq {
				if float32(want) != inv[i] {
					t.Logf("%s case %d: inv_freq[%d] = %v, transformers %v (%.2g ulp)", name, ci, i, inv[i], float32(want),
						math.Abs(float64(inv[i])-want)/float64(ulp32(float32(want))))
				}
			}
		}
	}
}

func ulp32(x float32) float32 {
	return math.Nextafter32(x, float32(math.Inf(1))) - x
}

// TestLlamaAgainstPyTorch: each tiny checkpoint gen_llama.py wrote (GQA
// in BF16 shards, explicit head_dim with all biases in F16, Qwen2 tied
// with q/k/v bias, linear/dynamic/llama3/yarn RoPE scaling at positions
// far beyond the original context) loads through Open → LlamaConfig →
// llm.New → Load, and its logits match transformers' forward (run by the
// script in float32) within logitTol.
func TestLlamaAgainstPyTorch(t *testing.T) {
	for _, name := range []string{"llama_gqa", "llama_headdim", "llama_qwen2", "llama_linear", "llama_dynamic", "llama_llama3", "llama_yarn"} {
		t.Run(name, func(t *testing.T) {
			m, _, plan := loadDecoder(t, name, LlamaConfig, LlamaMapping)
			if name == "llama_headdim" && len(plan.Ignored) != 1 {
				t.Errorf("ignored %v, want the one rotary_emb.inv_freq buffer", plan.Ignored)
			}
			compareLogits(t, name, m)
		})
	}
}

// TestLlamaConfigFields checks what LlamaConfig reads from each test
// checkpoint.
func TestLlamaConfigFields(t *testing.T) {
	read := func(name string) llm.Config {
		b, err := os.ReadFile(filepath.Join("testdata", name, ConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		c, err := LlamaConfig(b)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := read("llama_gqa"); c.KVHeads != 2 || c.Heads != 4 || c.Eps != 1e-5 || c.Tied {
		t.Errorf("llama_gqa: %+v", c)
	}
	if c := read("llama_headdim"); c.HeadDim != 8 || !c.AttnBias || !c.MLPBias || c.Theta != 500000 {
		t.Errorf("llama_headdim: %+v", c)
	}
	if c := read("llama_qwen2"); !c.QKVBias || c.AttnBias || !c.Tied || c.Theta != 1e6 {
		t.Errorf("llama_qwen2: %+v", c)
	}
	if c := read("llama_llama3"); c.RoPE != (llm.RoPEScaling{Type: "llama3", Factor: 8, OrigMaxPos: 32, LowFreqFactor: 1, HighFreqFactor: 4}) {
		t.Errorf("llama_llama3: rope %+v", c.RoPE)
	}
	if c := read("llama_linear"); c.RoPE.Type != "linear" || c.RoPE.Factor != 2 {
		t.Errorf("llama_linear (\"type\" alias): rope %+v", c.RoPE)
	}
}

// TestLlamaConfigErrors: a bad field is named with config.json.
func TestLlamaConfigErrors(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"model_type": "gpt2"}`, "config.json: model_type"},
		{`{"num_attention_heads": 4, "num_key_value_heads": 3, "hidden_size": 32}`, "config.json: num_key_value_heads"},
		{`{"hidden_act": "gelu"}`, "config.json: hidden_act"},
		{`{"rope_scaling": {"type": "linear"}}`, "config.json: rope_scaling.factor"},
		{`{"rope_scaling": {"rope_type": "longrope", "factor": 2}}`, "config.json: rope_scaling.rope_type"},
		{`{"rope_parameters": {"rope_type": "llama3", "factor": 8, "rope_theta": 10000}}`, "config.json: rope_parameters.low_freq_factor"},
		{`{"hidden_size": 30, "num_attention_heads": 4}`, "config.json: num_attention_heads"},
		{`{"head_dim": 5}`, "config.json: head_dim"},
		{`{"vocab_size": 0}`, "config.json: vocab_size"},
		{`{"model_type": "qwen2", "use_sliding_window": true}`, "config.json: use_sliding_window"},
		{`{"rms_norm_eps": "x"}`, "config.json"},
	} {
		_, err := LlamaConfig([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LlamaConfig(%s) = %v, want an error containing %q", tc.json, err, tc.want)
		}
	}
}
