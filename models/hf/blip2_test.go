package hf_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/hf"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/qformer"
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
