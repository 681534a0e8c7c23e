package vit

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

// goldenCfg: CLIP-style (class token, ln_pre, quick GELU) with positions
// learned on a 2×2 grid, run on 12 px images (3×3 patches): the reference
// interpolates the positions with F.interpolate(bicubic) as Qwen-VL's
// get_abs_pos does.
var goldenCfg = Config{ImageSize: 8, PatchSize: 4, Channels: 3, Width: 8, Layers: 2, Heads: 2, MLPDim: 16,
	ClassToken: true, PatchBias: true, PreNorm: true, Act: nn.ActQuickGELU, Eps: 1e-5}

func TestAgainstPyTorch(t *testing.T) {
	p := nn.NewParams()
	v, err := New(p, nn.Rng(11), "vit", goldenCfg)
	if err != nil {
		t.Fatal(err)
	}
	img := kernels.Zeros(2, 3, 12, 12)
	for i := range img.Data {
		img.Data[i] = float32(math.Sin(float64(i) * 0.37))
	}
	if *update {
		ts := append(p.StateTensors(false), safetensors.F32Tensor("input", img.Shape, img.Data))
		if err := safetensors.WriteFile(filepath.Join("testdata", "tiny.safetensors"), ts, nil); err != nil {
			t.Fatal(err)
		}
	}
	f, err := safetensors.ReadFile(filepath.Join("testdata", "tiny.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Load(f, nn.LoadOptions{Skip: []string{"input"}}); err != nil {
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
	for name, sel := range map[string]Select{"last_all": LastAll, "penultimate_patches": PenultimatePatches} {
		got := v.Forward(nil, img, sel)
		want := ref[name]
		if len(got.Data) != len(want) {
			t.Fatalf("%s: %d values, PyTorch %d", name, len(got.Data), len(want))
		}
		for i, w := range want {
			if math.Abs(float64(got.Data[i])-w) > 1e-4 {
				t.Fatalf("%s[%d] = %v, PyTorch reference %v", name, i, got.Data[i], w)
			}
		}
	}
}
