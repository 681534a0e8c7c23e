package hf

import (
	"strings"
	"testing"

	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/vit"
)

func TestSiglipVisionAgainstPyTorch(t *testing.T) {
	cfg, err := SiglipVisionConfig(readConfig(t, "siglip"))
	if err != nil {
		t.Fatal(err)
	}
	want := vit.Config{ImageSize: 12, PatchSize: 4, Channels: 3, Width: 16, Layers: 3, Heads: 2, MLPDim: 32,
		PatchBias: true, Act: nn.ActGELUTanh, Eps: 1e-6, PostNorm: vit.PostNormAll, Head: true}
	if cfg != want {
		t.Fatalf("SiglipVisionConfig = %+v, want %+v", cfg, want)
	}
	v, _, pl := openTower(t, "siglip", cfg, SiglipVisionMapping(cfg, "vision_model.", "vit."))
	if len(pl.Ignored) != 0 {
		t.Errorf("ignored %v", pl.Ignored)
	}
	ref := readRef(t, "siglip_out.json")
	for _, k := range []string{"", "20x20_", "16x8_", "14x15_"} { // 14x15: 3×3 patches, 2 and 3 px left out
		checkTower(t, "SigLIP/BF16", v, ref, k)
	}
}

// TestSiglipWithoutHead: a tower built without the pooling head (as LLaVA
// uses SigLIP) reads the same checkpoint, ignoring the head's tensors.
func TestSiglipWithoutHead(t *testing.T) {
	cfg, _ := SiglipVisionConfig(readConfig(t, "siglip"))
	cfg.Head = false
	v, _, pl := openTower(t, "siglip", cfg, SiglipVisionMapping(cfg, "vision_model.", "vit."))
	if len(pl.Ignored) != 11 {
		t.Errorf("ignored %d tensors %v, want the head's 11", len(pl.Ignored), pl.Ignored)
	}
	for _, n := range pl.Ignored {
		if !strings.HasPrefix(n, "vision_model.head.") {
			t.Errorf("ignored %q", n)
		}
	}
	ref := readRef(t, "siglip_out.json")
	img := refImages(t, ref, "")
	out := v.Encode(nil, img, false)
	if out.Pooled != nil {
		t.Error("a tower without the head returned a pooled output")
	}
	compare(t, "SigLIP without head last_hidden_state", out.Last, ref["last_hidden_state"])
}

func TestSiglipVisionConfigSources(t *testing.T) {
	c, err := SiglipVisionConfig([]byte(`{"model_type":"llava_onevision","vision_config":{"model_type":"siglip_vision_model","hidden_size":1152,"intermediate_size":4304,"num_hidden_layers":26,"num_attention_heads":16,"image_size":384,"patch_size":14,"vision_use_head":false}}`))
	want := vit.Config{ImageSize: 384, PatchSize: 14, Channels: 3, Width: 1152, Layers: 26, Heads: 16, MLPDim: 4304,
		PatchBias: true, Act: nn.ActGELUTanh, Eps: 1e-6, PostNorm: vit.PostNormAll}
	if err != nil || c != want {
		t.Errorf("SiglipVisionConfig(LLaVA-OneVision vision_config) = %+v, %v; want %+v", c, err, want)
	}
	if _, err := SiglipVisionConfig([]byte(`{"model_type":"clip_vision_model"}`)); err == nil || !strings.Contains(err.Error(), "clip_vision_model") {
		t.Errorf("a CLIP config gave %v", err)
	}
}

func TestSiglipVisionRoundTrip(t *testing.T) {
	cfg, _ := SiglipVisionConfig(readConfig(t, "siglip"))
	_, p, _ := openTower(t, "siglip", cfg, SiglipVisionMapping(cfg, "vision_model.", "vit."))
	js, err := SiglipVisionConfigJSON(cfg)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, "SigLIP", p, func(c vit.Config) Mapping { return SiglipVisionMapping(c, "vision_model.", "vit.") }, js, SiglipVisionConfig, cfg)
}

func TestSiglipVisionLoadErrors(t *testing.T) {
	cfg, _ := SiglipVisionConfig(readConfig(t, "siglip"))
	m := SiglipVisionMapping(cfg, "vision_model.", "vit.")
	checkLoadErrors(t, "siglip", cfg, m, "vision_model.head.attention.in_proj_weight")
	checkLoadErrors(t, "siglip", cfg, m, "vision_model.embeddings.patch_embedding.bias")
}
