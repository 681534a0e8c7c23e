package hf_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/hf"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/qformer"
	"github.com/loomtrain/loom/models/safetensors"
)

// bqRef reads the reference outputs a gen_*.py script wrote (F64 values,
// I64 ids) from testdata/<dir>/reference.safetensors.
type bqRef struct {
	t *testing.T
	f *safetensors.File
}

func bqOpenRef(t *testing.T, dir string) bqRef {
	t.Helper()
	f, err := safetensors.ReadFile(filepath.Join("testdata", dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	return bqRef{t, f}
}

func (r bqRef) f64(name string) ([]float64, []int) {
	r.t.Helper()
	info, ok := r.f.Info(name)
	if !ok || info.DType != safetensors.F64 {
		r.t.Fatalf("reference: no F64 tensor %q", name)
	}
	b, err := r.f.Raw(name)
	if err != nil {
		r.t.Fatal(err)
	}
	v := make([]float64, len(b)/8)
	for i := range v {
		v[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return v, info.Shape
}

func (r bqRef) i64(name string) ([]int64, []int) {
	r.t.Helper()
	info, ok := r.f.Info(name)
	if !ok || info.DType != safetensors.I64 {
		r.t.Fatalf("reference: no I64 tensor %q", name)
	}
	b, err := r.f.Raw(name)
	if err != nil {
		r.t.Fatal(err)
	}
	v := make([]int64, len(b)/8)
	for i := range v {
		v[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return v, info.Shape
}

// bqTol is the largest |Loom − PyTorch| the reference checks accept: Loom
// computes in float32 from the checkpoint's float32 weights, PyTorch in
// float64 from the same values.
const bqTol = 1e-5

// bqCompare checks got [B, T, D] against want at the positions keep
// allows, and returns the largest difference.
func bqCompare(t *testing.T, what string, got *kernels.Tensor, want []float64, keep func(b, pos int) bool) float64 {
	t.Helper()
	if len(got.Data) != len(want) {
		t.Fatalf("%s: %d values, PyTorch %d", what, len(got.Data), len(want))
	}
	tt, d := got.Shape[1], got.Shape[2]
	worst := 0.0
	for i, w := range want {
		b, pos := i/(tt*d), (i/d)%tt
		if keep != nil && !keep(b, pos) {
			continue
		}
		diff := math.Abs(float64(got.Data[i]) - w)
		if diff > bqTol || math.IsNaN(diff) {
			t.Fatalf("%s[%d] (row %d, position %d, channel %d) = %v, PyTorch %v (|Δ| %.3g > %g)", what, i, b, pos, i%d, got.Data[i], w, diff, bqTol)
		}
		worst = max(worst, diff)
	}
	return worst
}

func bqBertCheckpoint(t *testing.T) *hf.Checkpoint {
	t.Helper()
	ck, err := hf.Open(context.Background(), hf.Dir(filepath.Join("testdata", "bert")))
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

// bqStage1 is what a BLIP-2 stage-1 Q-Former adds to BERT's sizes.
var bqStage1 = qformer.Config{Queries: 3, CrossFreq: 2, VisionWidth: 6, EmbedDim: 4, TextSide: true, Objectives: true}

// TestBertConfig reads the tiny BERT's config.json: the Q-Former's sizes
// are BERT's, plus the [DEC] row, and base's query-side fields stay.
func TestBertConfig(t *testing.T) {
	c, err := hf.BertConfig(bqBertCheckpoint(t).Config(), bqStage1)
	if err != nil {
		t.Fatal(err)
	}
	want := bqStage1
	want.Hidden, want.Layers, want.Heads, want.Intermediate, want.MaxPos = 16, 3, 2, 32, 24
	want.Vocab, want.Eps, want.Dropout = 41, 1e-12, 0.1
	if c != want {
		t.Fatalf("BertConfig = %+v, want %+v", c, want)
	}
	def, err := hf.BertConfig([]byte(`{"model_type": "bert"}`), bqStage1)
	if err != nil {
		t.Fatal(err)
	}
	if def.Hidden != 768 || def.Layers != 12 || def.Vocab != 30523 || def.MaxPos != 512 || def.Eps != 1e-12 {
		t.Errorf("BertConfig defaults = %+v, want bert-base-uncased's (768, 12 layers, vocab 30522+1, 512 positions, eps 1e-12)", def)
	}
	for _, tc := range []struct{ json, want string }{
		{`{"hidden_act": "gelu_new"}`, "hidden_act"},
		{`{"position_embedding_type": "relative_key"}`, "position_embedding_type"},
		{`{"model_type": "roberta"}`, "model_type"},
		{`{"hidden_size": 10, "num_attention_heads": 3}`, "hidden"},
	} {
		if _, err := hf.BertConfig([]byte(tc.json), bqStage1); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("BertConfig(%s) error = %v, want one naming %s", tc.json, err, tc.want)
		}
	}
}

// bqLoadBert builds a stage-1 Q-Former from the tiny BERT and loads it.
func bqLoadBert(t *testing.T, ck *hf.Checkpoint) (*qformer.QFormer, *nn.Params, *hf.Plan, qformer.Config) {
	t.Helper()
	c, err := hf.BertConfig(ck.Config(), bqStage1)
	if err != nil {
		t.Fatal(err)
	}
	p := nn.NewParams()
	q, err := qformer.New(p, nn.Rng(5), "qformer", c)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := hf.Load(context.Background(), ck, hf.BertQFormerMapping(c, "", "qformer."), p)
	if err != nil {
		t.Fatal(err)
	}
	return q, p, plan, c
}

// TestBertQFormerMatchesPyTorch loads the tiny BERT into a Q-Former and
// runs a text-only pass (text tokens through the self-attention and the
// text FFN): it must equal the LAVIS Q-Former's text pass, and, with
// BERT's token-type row 0 added to the position embeddings (what LAVIS
// leaves out), BertModel's last hidden state; the MLM head on it must
// equal BertLMPredictionHead's logits. Every position is compared, the
// padded ones included (both hide padded keys; a padded query row still
// attends to the real keys).
func TestBertQFormerMatchesPyTorch(t *testing.T) {
	ck := bqBertCheckpoint(t)
	q, p, _, c := bqLoadBert(t, ck)
	ref := bqOpenRef(t, "bert")
	ids64, shape := ref.i64("input_ids")
	mask, _ := ref.i64("attention_mask")
	b, tt := shape[0], shape[1]
	ids := make([]int32, len(ids64))
	for i, v := range ids64 {
		ids[i] = int32(v)
	}
	lens := make([]int, b)
	for i, v := range mask {
		lens[i/tt] += int(v)
	}
	in := qformer.Input{Text: ids, B: b, T: tt, TextLens: lens}

	out := q.Forward(nil, in)
	want, _ := ref.f64("lavis_text")
	d := bqCompare(t, "text pass vs LAVIS", out, want, nil)
	t.Logf("text pass vs LAVIS Qformer.bert: max |Δ| %.3g", d)

	logits := q.LMLogits(nil, out) // [B, T, V+1]: compare BERT's V columns
	wantMLM, mshape := ref.f64("lavis_mlm")
	v := mshape[2]
	cut := kernels.Zeros(b, tt, v)
	for r := 0; r < b*tt; r++ {
		copy(cut.Data[r*v:(r+1)*v], logits.Data[r*c.Vocab:r*c.Vocab+v])
	}
	d = bqCompare(t, "MLM logits", cut, wantMLM, nil)
	t.Logf("MLM head vs BertLMPredictionHead: max |Δ| %.3g", d)

	tok, err := ck.Float32(context.Background(), "bert.embeddings.token_type_embeddings.weight")
	if err != nil {
		t.Fatal(err)
	}
	pos := p.Get("qformer.embeddings.position_embeddings.weight")
	for i := range pos.Data {
		pos.Data[i] += tok[i%c.Hidden]
	}
	wantBert, _ := ref.f64("bert_last_hidden")
	d = bqCompare(t, "text pass (+ token type 0) vs BertModel", q.Forward(nil, in), wantBert, nil)
	t.Logf("text pass with token_type row 0 vs BertModel.last_hidden_state: max |Δ| %.3g", d)
}

// TestBertQFormerPlan checks what the BERT mapping initialises: the query
// FFN is a copy of BERT's FFN, the [DEC] row keeps its initialisation, and
// Plan.RandomInit lists exactly the query tokens, the cross-attention
// layers (0 and 2 of 3), the [DEC] rows and the stage-1 heads.
func TestBertQFormerPlan(t *testing.T) {
	ck := bqBertCheckpoint(t)
	fresh := nn.NewParams()
	c, _ := hf.BertConfig(ck.Config(), bqStage1)
	if _, err := qformer.New(fresh, nn.Rng(5), "qformer", c); err != nil {
		t.Fatal(err)
	}
	_, p, plan, _ := bqLoadBert(t, ck)
	for l := 0; l < c.Layers; l++ {
		for _, s := range [][2]string{{"intermediate", ".dense.weight"}, {"output", ".dense.bias"}, {"output", ".LayerNorm.weight"}} {
			text := p.Get(bqLayer(l, s[0]+s[1]))
			query := p.Get(bqLayer(l, s[0]+"_query"+s[1]))
			if !slices.Equal(text.Data, query.Data) {
				t.Errorf("%s differs from %s: the query FFN must start as BERT's FFN", query.Name, text.Name)
			}
		}
	}
	word := p.Get("qformer.embeddings.word_embeddings.weight")
	w0 := fresh.Get("qformer.embeddings.word_embeddings.weight")
	h := c.Hidden
	if !slices.Equal(word.Data[40*h:], w0.Data[40*h:]) {
		t.Errorf("the [DEC] row changed on load; it must keep its N(0, 0.02) initialisation")
	}
	if bias := p.Get("qformer.cls.predictions.bias"); bias.Data[40] != 0 {
		t.Errorf("cls.predictions.bias[40] ([DEC]) = %v, want 0 (transformers pads the tied bias with zeros)", bias.Data[40])
	}
	wantRandom := []string{
		"qformer.embeddings.word_embeddings.weight rows 40..40",
		"qformer.cls.predictions.bias rows 40..40",
		"qformer.query_tokens",
	}
	for _, l := range []int{0, 2} {
		for _, s := range []string{"query", "key", "value", "output.dense", "output.LayerNorm"} {
			wantRandom = append(wantRandom, bqLayer(l, "crossattention."+s+".weight"), bqLayer(l, "crossattention."+s+".bias"))
		}
	}
	for _, s := range []string{"vision_proj.weight", "vision_proj.bias", "text_proj.weight", "text_proj.bias", "itm_head.weight", "itm_head.bias", "temp"} {
		wantRandom = append(wantRandom, "qformer."+s)
	}
	slices.Sort(wantRandom)
	got := slices.Clone(plan.RandomInit)
	slices.Sort(got)
	if !slices.Equal(got, wantRandom) {
		t.Errorf("RandomInit =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantRandom, "\n"))
	}
	slices.Sort(plan.Ignored)
	wantIgnored := []string{
		"bert.embeddings.position_ids", "bert.embeddings.token_type_embeddings.weight",
		"bert.pooler.dense.bias", "bert.pooler.dense.weight",
		"cls.predictions.decoder.bias", "cls.predictions.decoder.weight",
		"cls.seq_relationship.bias", "cls.seq_relationship.weight",
	}
	if !slices.Equal(plan.Ignored, wantIgnored) {
		t.Errorf("Ignored = %v, want %v", plan.Ignored, wantIgnored)
	}
}

func bqLayer(l int, rest string) string { return fmt.Sprintf("qformer.layer.%d.%s", l, rest) }

// bqRewrite copies the tiny BERT to a temporary directory with its tensor
// names changed by rename (nil drops a tensor), its data as is.
func bqRewrite(t *testing.T, src string, rename func(string) []string) string {
	t.Helper()
	f, err := safetensors.ReadFile(filepath.Join("testdata", src, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, info := range f.Tensors() {
		raw, err := f.Raw(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range rename(info.Name) {
			ts = append(ts, safetensors.Tensor{Name: n, DType: info.DType, Shape: info.Shape, Data: raw})
		}
	}
	dir := t.TempDir()
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join("testdata", src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBertQFormerNameVariants: a BertModel file (no "bert." prefix) with
// the old LayerNorm gamma/beta names loads the same values as the
// BertForPreTraining file.
func TestBertQFormerNameVariants(t *testing.T) {
	_, want, _, c := bqLoadBert(t, bqBertCheckpoint(t))
	dir := bqRewrite(t, "bert", func(n string) []string {
		n = strings.TrimPrefix(n, "bert.")
		n = strings.Replace(n, "LayerNorm.weight", "LayerNorm.gamma", 1)
		n = strings.Replace(n, "LayerNorm.bias", "LayerNorm.beta", 1)
		return []string{n}
	})
	ck, err := hf.Open(context.Background(), hf.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	got := nn.NewParams()
	if _, err := qformer.New(got, nn.Rng(5), "qformer", c); err != nil {
		t.Fatal(err)
	}
	if _, err := hf.Load(context.Background(), ck, hf.BertQFormerMapping(c, "", "qformer."), got); err != nil {
		t.Fatal(err)
	}
	for _, n := range want.Names() {
		if !slices.Equal(got.Get(n).Data, want.Get(n).Data) {
			t.Errorf("%s differs between the bert.-prefixed weight/bias file and the unprefixed gamma/beta one", n)
		}
	}
}

// TestBertQFormerStage2 maps BERT onto a query-only Q-Former (stage 2:
// no text side, no heads): the text-side tensors are ignored, and the
// query FFN still comes from BERT's FFN.
func TestBertQFormerStage2(t *testing.T) {
	ck := bqBertCheckpoint(t)
	base := bqStage1
	base.TextSide, base.Objectives = false, false
	c, err := hf.BertConfig(ck.Config(), base)
	if err != nil {
		t.Fatal(err)
	}
	p := nn.NewParams()
	if _, err := qformer.New(p, nn.Rng(5), "qformer", c); err != nil {
		t.Fatal(err)
	}
	plan, err := hf.Load(context.Background(), ck, hf.BertQFormerMapping(c, "", "qformer."), p)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ck.Float32(context.Background(), "bert.encoder.layer.1.intermediate.dense.weight")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Get("qformer.layer.1.intermediate_query.dense.weight").Data, w) {
		t.Errorf("stage 2: intermediate_query is not BERT's intermediate")
	}
	for _, n := range plan.Ignored {
		if strings.Contains(n, "encoder.layer") {
			t.Errorf("stage 2 ignores %s: BERT's FFN must seed the query FFN", n)
		}
	}
	if !slices.Contains(plan.Ignored, "bert.embeddings.word_embeddings.weight") || !slices.Contains(plan.Ignored, "cls.predictions.bias") {
		t.Errorf("stage 2 Ignored = %v, want the word embeddings and the MLM head among them", plan.Ignored)
	}
}

// TestBertQFormerErrors: a missing, an unexpected and a wrongly shaped
// tensor are refused, naming the file and the tensor.
func TestBertQFormerErrors(t *testing.T) {
	c, err := hf.BertConfig(bqBertCheckpoint(t).Config(), bqStage1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		rename func(string) []string
		want   []string
	}{
		{"missing", func(n string) []string {
			if n == "bert.encoder.layer.1.attention.self.key.weight" {
				return nil
			}
			return []string{n}
		}, []string{"missing tensor", "bert.encoder.layer.1.attention.self.key.weight", "qformer.layer.1.attention.key.weight"}},
		{"unexpected", func(n string) []string {
			if n == "bert.pooler.dense.bias" {
				return []string{n, "bert.encoder.layer.0.adapter.bias"}
			}
			return []string{n}
		}, []string{"model.safetensors", "unexpected tensor", "bert.encoder.layer.0.adapter.bias"}},
		{"extra layer", func(n string) []string {
			if strings.HasPrefix(n, "bert.encoder.layer.2.") {
				return []string{n, strings.Replace(n, "layer.2.", "layer.3.", 1)}
			}
			return []string{n}
		}, []string{"model.safetensors", "unexpected tensor", "bert.encoder.layer.3."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := bqRewrite(t, "bert", tc.rename)
			ck, err := hf.Open(context.Background(), hf.Dir(dir))
			if err != nil {
				t.Fatal(err)
			}
			p := nn.NewParams()
			if _, err := qformer.New(p, nn.Rng(5), "qformer", c); err != nil {
				t.Fatal(err)
			}
			_, err = hf.Load(context.Background(), ck, hf.BertQFormerMapping(c, "", "qformer."), p)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("Load error = %v, want one containing %q", err, w)
				}
			}
		})
	}
	// Wrong shape: a Q-Former of another width.
	wide := c
	wide.Intermediate = 48
	p := nn.NewParams()
	if _, err := qformer.New(p, nn.Rng(5), "qformer", wide); err != nil {
		t.Fatal(err)
	}
	_, err = hf.Load(context.Background(), bqBertCheckpoint(t), hf.BertQFormerMapping(wide, "", "qformer."), p)
	if err == nil || !strings.Contains(err.Error(), "model.safetensors") || !strings.Contains(err.Error(), "intermediate.dense") || !strings.Contains(err.Error(), "shape") {
		t.Fatalf("Load into intermediate 48 error = %v, want a shape error naming the file and the tensor", err)
	}
}
