package hf_test

import (
	"context"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/models/hf"
	"github.com/loomtrain/loom/models/llm"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/qformer"
	"github.com/loomtrain/loom/models/vit"
)

func bqBlip2Checkpoint(t *testing.T) *hf.Checkpoint {
	t.Helper()
	ck, err := hf.Open(context.Background(), hf.Dir(filepath.Join("testdata", "blip2")))
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

// TestBlip2QFormerConfig reads the tiny Blip2 config.json.
func TestBlip2QFormerConfig(t *testing.T) {
	c, err := hf.Blip2QFormerConfig(bqBlip2Checkpoint(t).Config(), qformer.Config{EmbedDim: 4})
	if err != nil {
		t.Fatal(err)
	}
	want := qformer.Config{Hidden: 16, Layers: 3, Heads: 2, Intermediate: 32, Vocab: 40, MaxPos: 24, Queries: 4,
		CrossFreq: 2, VisionWidth: 12, EmbedDim: 4, Eps: 1e-12, Dropout: 0.1}
	if c != want {
		t.Fatalf("Blip2QFormerConfig = %+v, want %+v", c, want)
	}
	def, err := hf.Blip2QFormerConfig([]byte(`{"model_type": "blip-2"}`), qformer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if def.Hidden != 768 || def.Layers != 12 || def.Queries != 32 || def.VisionWidth != 1408 || def.CrossFreq != 2 {
		t.Errorf("Blip2QFormerConfig defaults = %+v, want Blip2Config's (768, 12 layers, 32 queries, vision 1408, every 2nd layer)", def)
	}
	if _, err := hf.Blip2QFormerConfig([]byte(`{"model_type": "llava"}`), qformer.Config{}); err == nil || !strings.Contains(err.Error(), "model_type") {
		t.Errorf("Blip2QFormerConfig(llava) error = %v, want one naming model_type", err)
	}
}

// TestBlip2QFormerMatchesPyTorch loads the Q-Former, the query tokens and
// the language projection of the tiny Blip2ForConditionalGeneration and
// runs the query pass on fixed image features: it must equal
// Blip2QFormerModel's last hidden state, and the projection
// language_projection's output, within 1e-5.
func TestBlip2QFormerMatchesPyTorch(t *testing.T) {
	ck := bqBlip2Checkpoint(t)
	c, err := hf.Blip2QFormerConfig(ck.Config(), qformer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := nn.NewParams()
	q, err := qformer.New(p, nn.Rng(9), "qformer", c)
	if err != nil {
		t.Fatal(err)
	}
	proj := nn.NewLinear(p, nn.Rng(9), "llm_proj", c.Hidden, 16, true)
	m := hf.Blip2QFormerMapping(c, "", "qformer.")
	m.Entries = append(m.Entries,
		hf.Entry{HF: "language_projection.weight", Loom: []string{"llm_proj.weight"}},
		hf.Entry{HF: "language_projection.bias", Loom: []string{"llm_proj.bias"}})
	m.Ignore = append(m.Ignore, "vision_model", "language_model")
	plan, err := hf.Load(context.Background(), ck, m, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.RandomInit) != 0 {
		t.Errorf("RandomInit = %v: a stage-2 Q-Former is all in the checkpoint", plan.RandomInit)
	}
	ref := bqOpenRef(t, "blip2")
	img, shape := ref.f64("image_embeds")
	x := kernels.Zeros(shape...)
	for i, v := range img {
		x.Data[i] = float32(v) // exactly representable: the script rounded them
	}
	out := q.Forward(nil, qformer.Input{Queries: true, Image: x, B: shape[0]})
	want, _ := ref.f64("qformer_out")
	t.Logf("query pass vs Blip2QFormerModel: max |Δ| %.3g", bqCompare(t, "query output", out, want, nil))
	wantProj, _ := ref.f64("projected")
	t.Logf("language_projection: max |Δ| %.3g", bqCompare(t, "projection", proj.Forward(nil, out), wantProj, nil))
}

// TestBlip2QFormerTextFFN: a Q-Former with a text side takes the text FFN
// from a checkpoint saved with use_qformer_text_input and, from one
// without it, keeps its initialisation (listed in RandomInit); a
// query-only Q-Former ignores it.
func TestBlip2QFormerTextFFN(t *testing.T) {
	ck := bqBlip2Checkpoint(t)
	c, err := hf.Blip2QFormerConfig(ck.Config(), qformer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	withText := bqRewrite(t, "blip2", func(n string) []string {
		if strings.Contains(n, "intermediate_query") || strings.Contains(n, "output_query") {
			return []string{n, strings.Replace(n, "_query", "", 1)}
		}
		return []string{n}
	})
	ckText, err := hf.Open(context.Background(), hf.Dir(withText))
	if err != nil {
		t.Fatal(err)
	}
	load := func(ck *hf.Checkpoint, c qformer.Config) (*hf.Plan, *nn.Params, error) {
		p := nn.NewParams()
		if _, err := qformer.New(p, nn.Rng(9), "qformer", c); err != nil {
			t.Fatal(err)
		}
		m := hf.Blip2QFormerMapping(c, "", "qformer.")
		m.Ignore = append(m.Ignore, "vision_model", "language_model", "language_projection")
		pl, err := hf.Load(context.Background(), ck, m, p)
		return pl, p, err
	}
	if _, _, err := load(ckText, c); err != nil {
		t.Errorf("query-only Q-Former from a use_qformer_text_input checkpoint: %v", err)
	}
	text := c
	text.TextSide = true
	_, p, err := load(ckText, text)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Get("qformer.layer.1.output.dense.weight").Data, p.Get("qformer.layer.1.output_query.dense.weight").Data) {
		t.Errorf("the text FFN was not read from qformer.encoder.layer.1.output.dense")
	}
	plan, _, err := load(ck, text)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(plan.RandomInit, "qformer.layer.0.intermediate.dense.weight") || !slices.Contains(plan.RandomInit, "qformer.embeddings.word_embeddings.weight") {
		t.Errorf("text-side Q-Former from a checkpoint without the text FFN: RandomInit = %v, want the text FFN and the word embeddings among them", plan.RandomInit)
	}
}

// bqBlip2Model builds Loom's BLIP-2 from the tiny checkpoint's config and
// loads the whole checkpoint into it.
func bqBlip2Model(t *testing.T, ck *hf.Checkpoint) (models.Model, *hf.Plan, hf.Mapping) {
	t.Helper()
	cfg, err := hf.Blip2Config(ck.Config())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Special = models.Special{Pad: 1, BOS: 2, EOS: 2}
	m, err := models.New(cfg, 4)
	if err != nil {
		t.Fatal(err)
	}
	mp, err := hf.Blip2Mapping(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := hf.Load(context.Background(), ck, mp, m.Params())
	if err != nil {
		t.Fatal(err)
	}
	return m, plan, mp
}

// TestBlip2Config reads the whole tiny config: EVA tower without its
// post-LayerNorm (ln_vision holds it), the Q-Former, and OPT.
func TestBlip2Config(t *testing.T) {
	cfg, err := hf.Blip2Config(bqBlip2Checkpoint(t).Config())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Family != models.BLIP2 || cfg.Stage != 2 || cfg.ImageSize != 8 {
		t.Errorf("family %s stage %d image %d, want blip2 stage 2 image 8", cfg.Family, cfg.Stage, cfg.ImageSize)
	}
	if v := cfg.ViT; v.Width != 12 || v.Layers != 2 || v.PatchSize != 4 || v.PostNorm != vit.PostNormNone || !v.ClassToken || !v.PatchBias {
		t.Errorf("ViT = %+v, want EVA 12 wide, 2 layers, patch 4, class token, patch bias, no post-LayerNorm", v)
	}
	if l := cfg.LLM; l.Kind != llm.KindOPT || l.Hidden != 16 || l.Vocab != 50 || l.Layers != 2 || l.FFN != 32 || !l.Tied {
		t.Errorf("LLM = %+v, want tied OPT 16 wide, vocab 50, 2 layers, ffn 32", l)
	}
	if q := cfg.QFormer; q.Queries != 4 || q.VisionWidth != 12 || q.Layers != 3 {
		t.Errorf("QFormer = %+v, want 4 queries on 12-wide features, 3 layers", q)
	}
	for _, tc := range []struct{ edit, want string }{
		{`"model_type": "t5"`, "text_config model_type"},
		{`"model_type": "blip-3"`, "model_type"},
	} {
		b := strings.Replace(string(bqBlip2Checkpoint(t).Config()), `"model_type": "opt"`, tc.edit, 1)
		if tc.edit == `"model_type": "blip-3"` {
			b = strings.Replace(string(bqBlip2Checkpoint(t).Config()), `"model_type": "blip-2"`, tc.edit, 1)
		}
		if _, err := hf.Blip2Config([]byte(b)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Blip2Config with %s: error = %v, want one naming %s", tc.edit, err, tc.want)
		}
	}
}

// TestBlip2WholeModel loads every tensor of the tiny
// Blip2ForConditionalGeneration into Loom's BLIP-2 stage 2 with an OPT
// LLM: nothing is left at random, post_layernorm is ln_vision, EVA's k
// bias is zero, and a stage-2 forward (EVA → ln_vision → Q-Former →
// llm_proj → OPT) gives a finite loss.
func TestBlip2WholeModel(t *testing.T) {
	ck := bqBlip2Checkpoint(t)
	m, plan, _ := bqBlip2Model(t, ck)
	if len(plan.RandomInit) != 0 {
		t.Errorf("RandomInit = %v, want none: the checkpoint holds the whole model", plan.RandomInit)
	}
	ln, err := ck.Float32(context.Background(), "vision_model.post_layernorm.weight")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Params().Get("ln_vision.weight").Data, ln) {
		t.Errorf("ln_vision.weight is not vision_model.post_layernorm.weight")
	}
	for _, n := range []string{"vit.encoder.layers.0.self_attn.k_proj.bias"} {
		for _, v := range m.Params().Get(n).Data {
			if v != 0 {
				t.Fatalf("%s has %v: EVA's k bias is zero", n, v)
			}
		}
	}
	img := kernels.Zeros(2, 3, 8, 8)
	for i := range img.Data {
		img.Data[i] = float32(i%7)/7 - 0.4
	}
	out, err := m.Forward(nil, &models.Batch{Images: img, Tokens: [][]int32{{2, 7, 9, 4}, {2, 11, 3}}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if l := out.Loss.Item(); math.IsNaN(float64(l)) || math.IsInf(float64(l), 0) || l <= 0 {
		t.Errorf("stage-2 loss = %v, want finite and positive", l)
	}
}

// TestBlip2ExportRoundTrip exports the loaded model as a
// Blip2ForConditionalGeneration directory: it holds exactly the
// checkpoint's tensors, bit for bit, and its config.json reads back to the
// same Loom config.
func TestBlip2ExportRoundTrip(t *testing.T) {
	ck := bqBlip2Checkpoint(t)
	m, _, mp := bqBlip2Model(t, ck)
	cj, err := hf.Blip2ConfigJSON(m.Config())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := hf.Export(context.Background(), hf.Dir(dir), mp, m.Params(), hf.ExportOptions{Files: map[string][]byte{hf.ConfigFile: cj}}); err != nil {
		t.Fatal(err)
	}
	back, err := hf.Open(context.Background(), hf.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	orig := ck.Tensors()
	got := back.Tensors()
	names := func(ts []hf.TensorInfo) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.Name)
		}
		slices.Sort(out)
		return out
	}
	if a, b := names(orig), names(got); !slices.Equal(a, b) {
		t.Fatalf("exported tensors differ from the checkpoint's:\nexported %v\noriginal %v", b, a)
	}
	for _, o := range orig {
		e, _ := back.Info(o.Name)
		if !slices.Equal(e.Shape, o.Shape) || e.DType != o.DType {
			t.Errorf("%s: exported %s %v, checkpoint %s %v", o.Name, e.DType, e.Shape, o.DType, o.Shape)
			continue
		}
		a, err := ck.Float32(context.Background(), o.Name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := back.Float32(context.Background(), o.Name)
		if err != nil {
			t.Fatal(err)
		}
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				t.Fatalf("%s[%d]: exported %v, checkpoint %v (not bit-identical)", o.Name, i, b[i], a[i])
			}
		}
	}
	c1, err := hf.Blip2Config(ck.Config())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := hf.Blip2Config(back.Config())
	if err != nil {
		t.Fatalf("re-reading the exported config.json: %v", err)
	}
	if !reflect.DeepEqual(c1, c2) {
		t.Errorf("config after export = %+v\nbefore %+v", c2, c1)
	}
	// The exported directory loads into a fresh model as the original did.
	bqBlip2Model(t, back)
}

// TestBlip2Errors: a missing, an unexpected and a wrongly shaped tensor
// of the whole-model layout are refused, naming the file and the tensor.
func TestBlip2Errors(t *testing.T) {
	ck := bqBlip2Checkpoint(t)
	cfg, err := hf.Blip2Config(ck.Config())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Special = models.Special{Pad: 1, BOS: 2, EOS: 2}
	load := func(ck *hf.Checkpoint, cfg models.Config) error {
		m, err := models.New(cfg, 4)
		if err != nil {
			t.Fatal(err)
		}
		mp, err := hf.Blip2Mapping(cfg, "")
		if err != nil {
			t.Fatal(err)
		}
		_, err = hf.Load(context.Background(), ck, mp, m.Params())
		return err
	}
	for _, tc := range []struct {
		name   string
		rename func(string) []string
		want   []string
	}{
		{"missing", func(n string) []string {
			if n == "qformer.encoder.layer.2.crossattention.attention.value.bias" {
				return nil
			}
			return []string{n}
		}, []string{"missing tensor", "qformer.encoder.layer.2.crossattention.attention.value.bias", "qformer.layer.2.crossattention.value.bias"}},
		{"unexpected", func(n string) []string {
			// Cross-attention on an odd layer: not where cross_attention_frequency 2 puts it.
			if strings.HasPrefix(n, "qformer.encoder.layer.0.crossattention.") {
				return []string{n, strings.Replace(n, "layer.0.", "layer.1.", 1)}
			}
			return []string{n}
		}, []string{"model.safetensors", "unexpected tensor", "qformer.encoder.layer.1.crossattention."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			back, err := hf.Open(context.Background(), hf.Dir(bqRewrite(t, "blip2", tc.rename)))
			if err != nil {
				t.Fatal(err)
			}
			err = load(back, cfg)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("Load error = %v, want one containing %q", err, w)
				}
			}
		})
	}
	wide := cfg
	wide.QFormer.Intermediate = 48
	err = load(ck, wide)
	if err == nil || !strings.Contains(err.Error(), "model.safetensors") || !strings.Contains(err.Error(), "intermediate_query.dense") || !strings.Contains(err.Error(), "shape") {
		t.Fatalf("Load into a Q-Former of intermediate 48: error = %v, want a shape error naming the file and the tensor", err)
	}
}
