package hf

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/models/llm"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/safetensors"
	"github.com/loomtrain/loom/models/vit"
)

func TestLlavaConfig(t *testing.T) {
	cfg, err := LlavaConfig(readConfig(t, "llava"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Family != models.LLaVA || cfg.Projector != models.ProjMLP2xGELU || cfg.ImageSize != 12 || cfg.Special.Image != 38 ||
		cfg.ViT.Width != 16 || cfg.ViT.PostNorm != vit.PostNormPooled || cfg.LLM.Hidden != 24 || cfg.LLM.KVHeads != 2 || cfg.LLM.Vocab != 40 {
		t.Errorf("LlavaConfig = %+v", cfg)
	}
	def, err := LlavaConfig([]byte(`{"model_type":"llava","text_config":{"vocab_size":32064}}`))
	if err != nil || def.ViT.ImageSize != 336 || def.ViT.PatchSize != 14 || def.ViT.Layers != 24 || def.LLM.Hidden != 4096 || def.Special.Image != 32000 {
		t.Errorf("LlavaConfig(defaults) = %+v, %v; want CLIP-L/14-336 and LLaMA-7B's shape, image token 32000", def, err)
	}
	for _, tc := range []struct{ json, err string }{
		{`{"vision_feature_layer":-1}`, "vision_feature_layer"},
		{`{"vision_feature_layer":[-2,-5]}`, "vision_feature_layer"},
		{`{"vision_feature_select_strategy":"full"}`, "full"},
		{`{"projector_hidden_act":"relu"}`, "projector_hidden_act"},
		{`{"model_type":"llava_next"}`, "llava_next"},
		{`{"image_token_index":40000}`, "image_token_index"},
	} {
		if _, err := LlavaConfig([]byte(tc.json)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("LlavaConfig(%s) error %v, want one naming %s", tc.json, err, tc.err)
		}
	}
}

// loadLlava builds Loom's LLaVA from testdata/dir and loads it.
func loadLlava(t *testing.T, dir string) (models.Config, models.Model, *Plan) {
	t.Helper()
	ck, err := Open(context.Background(), Dir(filepath.Join("testdata", dir)))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LlavaConfig(ck.Config())
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.New(cfg, 5)
	if err != nil {
		t.Fatal(err)
	}
	mp, err := LlavaMapping(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := Load(context.Background(), ck, mp, m.Params())
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.RandomInit) > 0 {
		t.Errorf("%s: left at their initialisation: %v", dir, pl.RandomInit)
	}
	return cfg, m, pl
}

// llavaLogits computes the logits of Loom's LLaVA parts on the loaded
// parameters: vit.PenultimatePatches → mm_projector.0 → GELU →
// mm_projector.2, spliced into the token embeddings where the ids are the
// image token (the expanded form HF's processor produces), then the decoder
// and its head.
func llavaLogits(t *testing.T, cfg models.Config, p *nn.Params, img *kernels.Tensor, ids []int32, b, n int) (*kernels.Tensor, *kernels.Tensor) {
	t.Helper()
	q := nn.NewParams()
	rng := nn.Rng(1)
	v, err := vit.New(q, rng, "vit", cfg.ViT)
	if err != nil {
		t.Fatal(err)
	}
	fc1 := nn.NewLinear(q, rng, "mm_projector.0", cfg.ViT.Width, cfg.LLM.Hidden, true)
	fc2 := nn.NewLinear(q, rng, "mm_projector.2", cfg.LLM.Hidden, cfg.LLM.Hidden, true)
	lm, err := llm.New(q, rng, "llm.", cfg.LLM)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range q.All() {
		src := p.Get(x.Name)
		if src == nil {
			t.Fatalf("Loom's LLaVA has no %s", x.Name)
		}
		copy(x.Data, src.Data)
	}
	if q.Count() != p.Count() {
		t.Fatalf("parts hold %d parameters, Loom's LLaVA %d", q.Count(), p.Count())
	}
	var tp *kernels.Tape
	feat := fc2.Forward(tp, tp.GELUErf(fc1.Forward(tp, v.Forward(tp, img, vit.PenultimatePatches))))
	x := lm.EmbedTokens(tp, ids, b, n)
	k, h := feat.Shape[1], cfg.LLM.Hidden
	next := 0
	for i, id := range ids {
		if id == cfg.Special.Image {
			copy(x.Data[i*h:(i+1)*h], feat.Data[next*h:(next+1)*h])
			next++
		}
	}
	if next != img.Shape[0]*k {
		t.Fatalf("%d image tokens for %d features", next, img.Shape[0]*k)
	}
	return feat, lm.Logits(tp, lm.Forward(tp, x, llm.Layout{}))
}

func TestLlavaAgainstPyTorch(t *testing.T) {
	ref := readRef(t, "llava_out.json")
	img := refImages(t, ref, "")
	var ids []int32
	for _, f := range ref["input_ids"] {
		ids = append(ids, int32(f))
	}
	b, n := 2, len(ids)/2
	for _, dir := range []string{"llava", "llava_new"} {
		cfg, m, pl := loadLlava(t, dir)
		if dir == "llava" && len(pl.Ignored) != 0 {
			t.Errorf("%s: ignored %v", dir, pl.Ignored)
		}
		feat, logits := llavaLogits(t, cfg, m.Params(), img, ids, b, n)
		d1 := compare(t, dir+" image features", feat, ref["image_features"])
		d2 := compare(t, dir+" logits", logits, ref["logits"])
		// The model's own Forward: one placeholder per image, expanded to
		// TokensPerImage positions; every text token after the first trained.
		var rows [][]int32
		for r := 0; r < b; r++ {
			var row []int32
			for i, id := range ids[r*n : (r+1)*n] {
				if id != cfg.Special.Image || (i > 0 && ids[r*n+i-1] != cfg.Special.Image) {
					row = append(row, id)
				}
			}
			rows = append(rows, row)
		}
		out, err := m.Forward(nil, &models.Batch{Images: img, Tokens: rows})
		if err != nil {
			t.Fatal(err)
		}
		loss := float64(out.Terms["lm"])
		if d := math.Abs(loss - ref["loss"][0]); d > visionTol {
			t.Errorf("%s: Loom's LLaVA loss %v, PyTorch %v (|Δ| %.2g)", dir, loss, ref["loss"][0], d)
		}
		t.Logf("%s: max |Δ| image features %.2g, logits %.2g; loss %.8f vs %.8f", dir, d1, d2, loss, ref["loss"][0])
	}
}

// TestLlavaRoundTrip: a model read from the new layout exports in the
// legacy layout, which reads back bit for bit.
func TestLlavaRoundTrip(t *testing.T) {
	ctx := context.Background()
	cfg, m, _ := loadLlava(t, "llava_new")
	js, err := LlavaConfigJSON(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mp, _ := LlavaMapping(cfg)
	dir := t.TempDir()
	res, err := Export(ctx, Dir(dir), mp, m.Params(), ExportOptions{Files: map[string][]byte{ConfigFile: js}, ShardBytes: 30000})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Shards) < 2 {
		t.Errorf("export wrote %v, want several shards", res.Shards)
	}
	ck, err := Open(ctx, Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range ck.Tensors() {
		if strings.HasPrefix(ti.Name, "model.") || ti.Name == "lm_head.weight" {
			t.Errorf("exported %q: want the legacy layout", ti.Name)
		}
	}
	cfg2, err := LlavaConfig(ck.Config())
	if err != nil {
		t.Fatal(err)
	}
	if cfg2.ViT != cfg.ViT || cfg2.LLM != cfg.LLM || cfg2.Special != cfg.Special || cfg2.ImageSize != cfg.ImageSize {
		t.Fatalf("config after export %+v, before %+v", cfg2, cfg)
	}
	m2, err := models.New(cfg2, 77)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(ctx, ck, mp, m2.Params()); err != nil {
		t.Fatal(err)
	}
	for _, a := range m.Params().All() {
		b := m2.Params().Get(a.Name)
		for i := range a.Data {
			if math.Float32bits(a.Data[i]) != math.Float32bits(b.Data[i]) {
				t.Fatalf("%s[%d] = %v after export and import, %v before", a.Name, i, b.Data[i], a.Data[i])
			}
		}
	}
}

func TestLlavaLoadErrors(t *testing.T) {
	cfg, _ := LlavaConfig(readConfig(t, "llava"))
	mp, _ := LlavaMapping(cfg)
	for _, victim := range []string{"multi_modal_projector.linear_2.bias", "language_model.model.layers.1.mlp.up_proj.weight",
		"vision_tower.vision_model.encoder.layers.2.self_attn.k_proj.weight"} {
		m, err := models.New(cfg, 1)
		if err != nil {
			t.Fatal(err)
		}
		d := rewrite(t, "llava", func(ts []safetensors.Tensor) []safetensors.Tensor { return dropTensor(ts, victim) })
		ck, err := Open(context.Background(), Dir(d))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Load(context.Background(), ck, mp, m.Params())
		if err == nil || !strings.Contains(err.Error(), `"`+victim+`"`) || !strings.Contains(err.Error(), "missing") {
			t.Errorf("without %s: Load error %v", victim, err)
		}
	}
	if _, err := LlavaMapping(models.Config{Projector: models.ProjLinear}); err == nil {
		t.Error("LlavaMapping accepted a linear projector")
	}
}
