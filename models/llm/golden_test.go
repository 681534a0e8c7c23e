package llm

import (
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/safetensors"
)

var update = flag.Bool("update", false, "rewrite testdata/tiny.safetensors (then run testdata/torch_ref.py)")

var goldenCfg = Config{Vocab: 20, Hidden: 8, Layers: 2, Heads: 2, FFN: 12, Theta: 500, Eps: 1e-6, QKVBias: true}

// TestAgainstPyTorch compares the decoder's logits with a PyTorch reference
// (testdata/torch_ref.py: Hugging Face LlamaModel's equations written out in
// torch 1.13) run on the same checkpoint, with packed segments and explicit
// position ids.
func TestAgainstPyTorch(t *testing.T) {
	ckpt := filepath.Join("testdata", "tiny.safetensors")
	p := nn.NewParams()
	m, err := New(p, nn.Rng(7), "", goldenCfg)
	if err != nil {
		t.Fatal(err)
	}
	// Make the norms non-trivial so their weights matter.
	for _, n := range []string{"model.layers.0.input_layernorm.weight", "model.norm.weight"} {
		w := p.Get(n)
		for i := range w.Data {
			w.Data[i] = 1 + 0.1*float32(i)
		}
	}
	if *update {
		if err := p.SaveFile(ckpt, nil); err != nil {
			t.Fatal(err)
		}
	}
	f, err := safetensors.ReadFile(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Load(f, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Tokens []int32     `json:"tokens"`
		Seg    []int32     `json:"seg"`
		Pos    []int32     `json:"pos"`
		Logits [][]float64 `json:"logits"`
	}
	b, err := os.ReadFile(filepath.Join("testdata", "torch_logits.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	x := m.EmbedTokens(nil, ref.Tokens, 1, len(ref.Tokens))
	got := m.Logits(nil, m.Forward(nil, x, Layout{Pos: ref.Pos, Seg: ref.Seg}))
	v := goldenCfg.Vocab
	for i, row := range ref.Logits {
		for j, want := range row {
			if g := got.Data[i*v+j]; math.Abs(float64(g)-want) > 1e-4 {
				t.Fatalf("token %d logit %d = %v, PyTorch reference %v", i, j, g, want)
			}
		}
	}
}
