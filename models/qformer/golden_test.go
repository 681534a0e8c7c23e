package qformer

import (
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/safetensors"
)

var update = flag.Bool("update", false, "rewrite testdata/tiny.safetensors (then run testdata/torch_ref.py)")

// TestAgainstPyTorch compares the Q-Former with a PyTorch transcription of
// LAVIS Qformer.py (BertEmbeddings with query_embeds, BertLayer with
// cross-attention on even layers and separate query/text FFNs, the
// get_extended_attention_mask masks, BertLMPredictionHead), in the ITG
// (UniLM) and ITM (bidirectional, padded) modes.
func TestAgainstPyTorch(t *testing.T) {
	p := nn.NewParams()
	q, err := New(p, nn.Rng(13), "qformer", tinyCfg)
	if err != nil {
		t.Fatal(err)
	}
	img := feats()
	// Non-trivial LayerNorm weights, so that parameter mix-ups show.
	for _, t := range p.All() {
		if len(t.Shape) == 1 && t.Shape[0] == tinyCfg.Hidden {
			for i := range t.Data {
				t.Data[i] += 0.05 * float32(i%3)
			}
		}
	}
	if *update {
		ts := append(p.StateTensors(false), safetensors.F32Tensor("image", img.Shape, img.Data))
		if err := safetensors.WriteFile(filepath.Join("testdata", "tiny.safetensors"), ts, nil); err != nil {
			t.Fatal(err)
		}
	}
	f, err := safetensors.ReadFile(filepath.Join("testdata", "tiny.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Load(f, nn.LoadOptions{Skip: []string{"image"}}); err != nil {
		t.Fatal(err)
	}
	var ref map[string][]float64
	b, err := os.ReadFile(filepath.Join("testdata", "torch_out.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	text := []int32{1, 5, 9, 2, 1, 7, 0, 0} // 2 rows of 4, the second padded after 2
	lens := []int{4, 2}
	itg := q.Forward(nil, Input{Queries: true, Image: img, Text: text, B: 2, T: 4, TextLens: lens, Mask: UniLMMask})
	itm := q.Forward(nil, Input{Queries: true, Image: img, Text: text, B: 2, T: 4, TextLens: lens})
	lm := q.LMLogits(nil, itg)
	for name, got := range map[string]*kernels.Tensor{"itg": itg, "itm": itm, "lm": lm} {
		want := ref[name]
		if len(want) != len(got.Data) {
			t.Fatalf("%s: %d values, PyTorch %d", name, len(got.Data), len(want))
		}
		for i, w := range want {
			// Padded text rows differ by construction (PyTorch's -10000
			// mask bias vs excluded keys); compare only real positions.
			row := i / (len(want) / (2 * 7))
			b, pos := row/7, row%7
			if pos >= 3+lens[b] {
				continue
			}
			if math.Abs(float64(got.Data[i])-w) > 2e-4 {
				t.Fatalf("%s[%d] (row %d position %d) = %v, PyTorch reference %v", name, i, b, pos, got.Data[i], w)
			}
		}
	}
}
