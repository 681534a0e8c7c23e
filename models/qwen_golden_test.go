package models

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

var update = flag.Bool("update", false, "rewrite the golden checkpoints in testdata (then run testdata/qwen_resampler_ref.py)")

// TestQwenResamplerAgainstPyTorch compares Qwen-VL's adapter with a PyTorch
// transcription of Resampler.forward (vllm layers/resampler.py, from HF
// Qwen-VL visual.py): positions on queries and keys, not values; keys'
// positions bicubic-interpolated from the 2×2 query grid to the 3×3 image
// grid; ln_post and proj after.
func TestQwenResamplerAgainstPyTorch(t *testing.T) {
	c, _ := Preset(QwenVL, "tiny")
	mm, err := New(c, 21)
	if err != nil {
		t.Fatal(err)
	}
	m := mm.(*qwenVL)
	x := kernels.Zeros(2, 9, c.ViT.Width)
	for i := range x.Data {
		x.Data[i] = float32(math.Cos(float64(i) * 0.11))
	}
	adapter := []string{"visual.attn_pool.*", "visual.ln_post.*", "visual.proj"}
	path := filepath.Join("testdata", "qwen_resampler.safetensors")
	if *update {
		var ts []safetensors.Tensor
		for _, p := range m.params.Select(adapter...) {
			ts = append(ts, safetensors.F32Tensor(p.Name, p.Shape, p.Data))
		}
		ts = append(ts, safetensors.F32Tensor("input", x.Shape, x.Data))
		if err := safetensors.WriteFile(path, ts, nil); err != nil {
			t.Fatal(err)
		}
	}
	f, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.params.Load(f, nn.LoadOptions{Only: adapter, Skip: []string{"input"}}); err != nil {
		t.Fatal(err)
	}
	var want []float64
	b, err := os.ReadFile(filepath.Join("testdata", "qwen_resampler_out.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	got := m.resample(nil, x, 3, 3)
	if len(got.Data) != len(want) {
		t.Fatalf("%d outputs, PyTorch %d", len(got.Data), len(want))
	}
	for i, w := range want {
		if math.Abs(float64(got.Data[i])-w) > 1e-4 {
			t.Fatalf("resampler output %d = %v, PyTorch %v", i, got.Data[i], w)
		}
	}
}
