package llm

import (
	"math"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
)

// TestParamCountVariants: ParamCount equals what New builds for GQA,
// explicit head_dim, attention/MLP biases, OPT pre- and post-LN, with and
// without project_in/out, tied and untied.
func TestParamCountVariants(t *testing.T) {
	base := Config{Vocab: 30, Hidden: 16, Layers: 2, Heads: 4, FFN: 24}
	cases := map[string]func(c *Config){
		"gqa":           func(c *Config) { c.KVHeads = 2 },
		"mqa tied":      func(c *Config) { c.KVHeads = 1; c.Tied = true },
		"head_dim":      func(c *Config) { c.HeadDim = 6; c.KVHeads = 2 },
		"attn+mlp bias": func(c *Config) { c.AttnBias = true; c.MLPBias = true },
		"qwen2":         func(c *Config) { c.QKVBias = true; c.Tied = true },
		"opt":           func(c *Config) { c.Kind = KindOPT; c.MaxPos = 20; c.Tied = true },
		"opt untied":    func(c *Config) { c.Kind = KindOPT; c.MaxPos = 20 },
		"opt-350m":      func(c *Config) { c.Kind = KindOPT; c.MaxPos = 20; c.EmbedDim = 8; c.PostLN = true; c.Tied = true },
	}
	for name, f := range cases {
		c := base
		f(&c)
		p := nn.NewParams()
		if _, err := New(p, nn.Rng(1), "llm.", c); err != nil {
			t.Fatalf("%s: New: %v", name, err)
		}
		if got, want := ParamCount(c), p.Count(); got != want {
			t.Errorf("%s: ParamCount = %d, New built %d", name, got, want)
		}
	}
	for name, c := range map[string]Config{
		"kv heads not dividing": {Vocab: 5, Hidden: 8, Layers: 1, Heads: 4, KVHeads: 3, FFN: 4},
		"odd head dim":          {Vocab: 5, Hidden: 8, Layers: 1, Heads: 4, HeadDim: 3, FFN: 4},
		"unknown kind":          {Kind: "gpt2", Vocab: 5, Hidden: 8, Layers: 1, Heads: 4, FFN: 4},
		"opt without max pos":   {Kind: KindOPT, Vocab: 5, Hidden: 8, Layers: 1, Heads: 4, FFN: 4},
		"unknown rope type":     {Vocab: 5, Hidden: 8, Layers: 1, Heads: 4, FFN: 4, RoPE: RoPEScaling{Type: "longrope", Factor: 2}},
		"llama3 without orig":   {Vocab: 5, Hidden: 8, Layers: 1, Heads: 4, FFN: 4, RoPE: RoPEScaling{Type: RoPELlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4}},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate accepted %s: %+v", name, c)
		}
	}
}

// TestGQAGradients: training through grouped-query attention (4 query
// heads reading 2 KV heads, head_dim 6 ≠ hidden/heads, biases, yarn RoPE)
// gives the gradients central finite differences of the cross-entropy
// loss give, for every kind of parameter.
func TestGQAGradients(t *testing.T) {
	for _, c := range []Config{
		{Vocab: 11, Hidden: 8, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 6, FFN: 12, AttnBias: true, MLPBias: true, MaxPos: 4,
			RoPE: RoPEScaling{Type: RoPEYarn, Factor: 4}},
		{Kind: KindOPT, Vocab: 11, Hidden: 8, Layers: 2, Heads: 2, FFN: 12, MaxPos: 8, EmbedDim: 6, Tied: true},
	} {
		t.Run(c.kind(), func(t *testing.T) { gradCheck(t, c) })
	}
}

func gradCheck(t *testing.T, c Config) {
	p := nn.NewParams()
	m, err := New(p, nn.Rng(5), "", c)
	if err != nil {
		t.Fatal(err)
	}
	// Larger weights than the 0.02 init, so that attention is not uniform
	// and the gradients are well above float32 noise.
	rng := nn.Rng(9)
	for _, w := range p.All() {
		for i := range w.Data {
			w.Data[i] += float32(0.3 * rng.NormFloat64())
		}
	}
	ids := []int32{1, 5, 2, 9, 3, 3, 7, 0}
	tgt := []int32{5, 2, 9, 3, 3, 7, 0, 4}
	lay := Layout{Pos: []int32{0, 1, 2, 3, 0, 1, 2, 3}, Seg: []int32{0, 0, 0, 0, 1, 1, 1, 1}}
	loss := func(tp *kernels.Tape) *kernels.Tensor {
		x := m.EmbedTokens(tp, ids, 2, 4)
		return tp.CrossEntropy(m.Logits(tp, m.Forward(tp, x, Layout{Pos: lay.Pos, Seg: lay.Seg})), tgt, kernels.CEOptions{})
	}
	tp := kernels.NewTape()
	p.ZeroGrad()
	tp.Backward(loss(tp))
	checked := 0
	for _, w := range p.All() {
		for _, i := range []int{0, len(w.Data) / 2, len(w.Data) - 1} {
			x0 := w.Data[i]
			const h = 1e-2
			w.Data[i] = x0 + h
			lp := float64(loss(nil).Data[0])
			w.Data[i] = x0 - h
			lm := float64(loss(nil).Data[0])
			w.Data[i] = x0
			fd := (lp - lm) / (2 * h)
			// The bound allows float32 noise and a ReLU kink inside ±h (OPT fc1).
			if g := float64(w.Grad[i]); math.Abs(g-fd) > 2e-3+3e-2*math.Abs(fd) {
				t.Errorf("d loss / d %s[%d] = %.6g on the tape, %.6g by finite differences", w.Name, i, g, fd)
			}
			checked++
		}
	}
	if checked < 3*len(p.All()) {
		t.Fatalf("checked %d entries", checked)
	}
}
