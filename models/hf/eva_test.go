package hf

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/vit"
)

func TestEVAVisionAgainstPyTorch(t *testing.T) {
	for _, tc := range []struct {
		dir  string
		want vit.Config
	}{
		{"eva", vit.Config{ImageSize: 12, PatchSize: 4, Channels: 3, Width: 16, Layers: 3, Heads: 2, MLPDim: 32,
			ClassToken: true, PatchBias: true, Act: nn.ActGELU, Eps: 1e-6, PostNorm: vit.PostNormAll}},
		{"eva_nobias", vit.Config{ImageSize: 12, PatchSize: 4, Channels: 3, Width: 16, Layers: 3, Heads: 2, MLPDim: 32,
			ClassToken: true, PatchBias: true, Act: nn.ActGELU, Eps: 1e-5, PostNorm: vit.PostNormAll, NoQKVBias: true}},
	} {
		cfg, err := EVAVisionConfig(readConfig(t, tc.dir))
		if err != nil {
			t.Fatal(err)
		}
		if cfg != tc.want {
			t.Fatalf("%s: EVAVisionConfig = %+v, want %+v", tc.dir, cfg, tc.want)
		}
		v, p, pl := openTower(t, tc.dir, cfg, EVAVisionMapping(cfg, "vision_model.", "vit."))
		if !cfg.NoQKVBias {
			if len(pl.Zeroed) != cfg.Layers {
				t.Errorf("%s: zeroed %v, want each layer's k bias", tc.dir, pl.Zeroed)
			}
			if q := p.Get("vit.encoder.layers.0.self_attn.q_proj.bias"); q.Data[0] == 0 {
				t.Errorf("%s: q bias not loaded", tc.dir)
			}
		}
		ref := readRef(t, tc.dir+"_out.json")
		for _, k := range []string{"", "20x20_"} {
			checkTower(t, tc.dir, v, ref, k)
		}
	}
}

func TestEVAVisionRoundTrip(t *testing.T) {
	for _, dir := range []string{"eva", "eva_nobias"} {
		cfg, _ := EVAVisionConfig(readConfig(t, dir))
		_, p, _ := openTower(t, dir, cfg, EVAVisionMapping(cfg, "vision_model.", "vit."))
		js, err := EVAVisionConfigJSON(cfg)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, dir, p, func(c vit.Config) Mapping { return EVAVisionMapping(c, "vision_model.", "vit.") }, js, EVAVisionConfig, cfg)
	}
}

// TestEVAWithoutPostNorm: Loom's BLIP-2 keeps ln_vision outside the ViT; a
// tower built without the post-LayerNorm ignores the checkpoint's.
func TestEVAWithoutPostNorm(t *testing.T) {
	cfg, _ := EVAVisionConfig(readConfig(t, "eva"))
	cfg.PostNorm = vit.PostNormNone
	_, _, pl := openTower(t, "eva", cfg, EVAVisionMapping(cfg, "vision_model.", "vit."))
	if len(pl.Ignored) != 2 {
		t.Errorf("ignored %v, want post_layernorm's weight and bias", pl.Ignored)
	}
}

func TestEVAVisionLoadErrors(t *testing.T) {
	cfg, _ := EVAVisionConfig(readConfig(t, "eva"))
	m := EVAVisionMapping(cfg, "vision_model.", "vit.")
	checkLoadErrors(t, "eva", cfg, m, "vision_model.encoder.layers.2.self_attn.qkv.weight")
	checkLoadErrors(t, "eva", cfg, m, "vision_model.encoder.layers.0.self_attn.v_bias")
	checkLoadErrors(t, "eva", cfg, m, "vision_model.embeddings.position_embedding")
}

// TestBlip2VisionMapping: the tower without its post-LayerNorm plus
// post_layernorm → ln_vision reproduces Blip2VisionModel's
// last_hidden_state as Loom's BLIP-2 computes it (ln_vision after the ViT).
func TestBlip2VisionMapping(t *testing.T) {
	cfg, _ := EVAVisionConfig(readConfig(t, "eva"))
	if _, err := Blip2VisionMapping(cfg, "vit."); err == nil {
		t.Error("Blip2VisionMapping accepted a tower with its own post-LayerNorm")
	}
	cfg.PostNorm = vit.PostNormNone
	m, err := Blip2VisionMapping(cfg, "vit.")
	if err != nil {
		t.Fatal(err)
	}
	ck, err := Open(context.Background(), Dir(filepath.Join("testdata", "eva")))
	if err != nil {
		t.Fatal(err)
	}
	p := nn.NewParams()
	v, err := vit.New(p, nn.Rng(1), "vit", cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln := nn.NewLayerNorm(p, "ln_vision", cfg.Width, cfg.Eps)
	pl, err := Load(context.Background(), ck, m, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.RandomInit) > 0 || len(pl.Ignored) > 0 {
		t.Errorf("random %v, ignored %v", pl.RandomInit, pl.Ignored)
	}
	ref := readRef(t, "eva_out.json")
	compare(t, "ln_vision(ViT)", ln.Forward(nil, v.Forward(nil, refImages(t, ref, ""), vit.LastAll)), ref["last_hidden_state"])
}
