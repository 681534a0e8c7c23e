package models

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/qformer"
	"github.com/loomtrain/loom/models/safetensors"
)

// Open reopens a file written by Save by itself: every family, every
// parameter bit for bit, written through SaveTo as well.
func TestOpenSavedModel(t *testing.T) {
	dir := t.TempDir()
	for _, f := range Families {
		src, _ := tinyModel(t, f, 2)
		path := filepath.Join(dir, string(f)+".safetensors")
		var buf bytes.Buffer
		if err := SaveTo(&buf, src, nil); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := Open(path)
		if err != nil {
			t.Fatalf("%s: Open: %v", f, err)
		}
		for _, n := range src.Params().Names() {
			if !slices.Equal(src.Params().Get(n).Data, m.Params().Get(n).Data) {
				t.Errorf("%s: %s differs after Open", f, n)
			}
		}
	}
	if _, err := Open(filepath.Join(dir, "missing.safetensors")); err == nil {
		t.Error("Open of a missing file succeeded")
	}
}

func TestSaveLoadFamily(t *testing.T) {
	dir := t.TempDir()
	for _, f := range Families {
		src, c := tinyModel(t, f, 1)
		path := filepath.Join(dir, string(f)+".safetensors")
		if err := Save(path, src, map[string]string{"step": "3"}); err != nil {
			t.Fatal(err)
		}
		file, err := safetensors.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if file.Metadata["family"] != string(f) || file.Metadata["step"] != "3" || file.Metadata["format"] != "pt" {
			t.Errorf("%s: metadata %v", f, file.Metadata)
		}
		rc, err := ReadConfig(path)
		if err != nil {
			t.Fatalf("%s: ReadConfig: %v", f, err)
		}
		if !reflect.DeepEqual(rc, c) {
			t.Errorf("%s: ReadConfig = %+v, saved %+v", f, rc, c)
		}
		dst, err := New(rc, 99)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path, dst, nn.LoadOptions{}); err != nil {
			t.Fatalf("%s: Load: %v", f, err)
		}
		b := tinyBatch(t, c, 1)
		a, _ := src.Forward(nil, b)
		d, _ := dst.Forward(nil, b)
		if a.Loss.Item() != d.Loss.Item() {
			t.Errorf("%s: loss %v after Load, %v before Save", f, d.Loss.Item(), a.Loss.Item())
		}
	}
}

// TestLoadProjectorOnly is LLaVA's pretrain_mm_mlp_adapter: stage 2 starts
// from a projector trained in stage 1 and loads nothing else.
func TestLoadProjectorOnly(t *testing.T) {
	src, c := tinyModel(t, LLaVA, 1)
	path := filepath.Join(t.TempDir(), "stage1.safetensors")
	if err := Save(path, src, nil); err != nil {
		t.Fatal(err)
	}
	dst, _ := New(c, 2)
	before := dst.Params().Get("llm.model.embed_tokens.weight").Clone()
	names, err := Load(path, dst, nn.LoadOptions{Only: []string{"mm_projector.*"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"mm_projector.0.weight", "mm_projector.0.bias", "mm_projector.2.weight", "mm_projector.2.bias"}; !reflect.DeepEqual(names, want) {
		t.Errorf("loaded %v, want %v", names, want)
	}
	if !reflect.DeepEqual(dst.Params().Get("mm_projector.2.weight").Data, src.Params().Get("mm_projector.2.weight").Data) {
		t.Error("projector not loaded")
	}
	if !reflect.DeepEqual(dst.Params().Get("llm.model.embed_tokens.weight").Data, before.Data) {
		t.Error("a projector-only load changed the LLM")
	}
}

// TestBLIP2Stage1IntoStage2 loads the stage-1 Q-Former (and ln_vision) into
// the stage-2 model, which has no text side: the text side must be skipped
// explicitly.
func TestBLIP2Stage1IntoStage2(t *testing.T) {
	s1, c := tinyModel(t, BLIP2, 1)
	path := filepath.Join(t.TempDir(), "stage1.safetensors")
	if err := Save(path, s1, nil); err != nil {
		t.Fatal(err)
	}
	c.Stage = 2
	s2, err := New(c, 2)
	if err != nil {
		t.Fatal(err)
	}
	only := []string{"vit.*", "ln_vision.*", "qformer.*"}
	_, err = Load(path, s2, nn.LoadOptions{Only: only})
	if err == nil || !strings.Contains(err.Error(), "extra tensor") || !strings.Contains(err.Error(), "stage1.safetensors") {
		t.Fatalf("loading a stage-1 file without skipping the text side: error %v, want an extra-tensor error naming the file", err)
	}
	names, err := Load(path, s2, nn.LoadOptions{Only: only, Skip: qformer.TextSidePatterns("qformer")})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != len(s2.Params().Select(only...)) {
		t.Errorf("loaded %d tensors, the stage-2 model has %d under %v", len(names), len(s2.Params().Select(only...)), only)
	}
	for _, n := range names {
		if !reflect.DeepEqual(s1.Params().Get(n).Data, s2.Params().Get(n).Data) {
			t.Errorf("%s differs after loading", n)
		}
	}
	if s2.Params().Get("llm_proj.weight") == nil || s2.Params().Frozen("llm_proj.weight") || !s2.Params().Frozen("llm.model.norm.weight") {
		t.Error("stage 2 must train llm_proj and keep the LLM frozen")
	}
	// Stage 2 runs.
	b := tinyBatch(t, c, 1)
	b.Tokens = [][]int32{{5, 6, 7}, {8, 9}, {10, 11, 12}}
	if _, err := s2.Forward(kernels.NewTape(), b); err != nil {
		t.Fatal(err)
	}
	// The reverse is a missing tensor: stage 1 needs the text side.
	path2 := filepath.Join(t.TempDir(), "stage2.safetensors")
	Save(path2, s2, nil)
	_, err = Load(path2, s1, nn.LoadOptions{Only: []string{"qformer.*"}})
	if err == nil || !strings.Contains(err.Error(), "missing from the file") {
		t.Errorf("loading stage 2 into stage 1: error %v, want a missing-tensor error", err)
	}
}

func TestBatchErrors(t *testing.T) {
	m, c := tinyModel(t, LLaVA, 1)
	good := tinyBatch(t, c, 1)
	tests := []struct {
		name string
		edit func(b *Batch)
		want string
	}{
		{"too few images", func(b *Batch) { b.Images = kernels.Zeros(2, 3, 16, 16) }, "2 images for 3 <image> placeholders"},
		{"bad id", func(b *Batch) { b.Tokens[1][0] = 9999 }, "tokens[1][0] = 9999"},
		{"loss rows", func(b *Batch) { b.Loss = [][]bool{{true}} }, "loss has 1 rows"},
		{"loss length", func(b *Batch) { b.Loss = [][]bool{{true}, {true}} }, "loss[0] has 1 entries"},
	}
	for _, tc := range tests {
		b := *good
		b.Tokens = [][]int32{append([]int32(nil), good.Tokens[0]...), append([]int32(nil), good.Tokens[1]...)}
		tc.edit(&b)
		_, err := m.Forward(nil, &b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Forward error = %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	q, qc := tinyModel(t, QwenVL, 1)
	b := tinyBatch(t, qc, 1)
	b.Tokens[1] = append([]int32{qc.Special.ImgStart, 5}, b.Tokens[1][2:]...)
	if _, err := q.Forward(nil, b); err == nil || !strings.Contains(err.Error(), "<img> must be followed by </img>") {
		t.Errorf("Qwen-VL with a broken <img></img> pair: error %v", err)
	}
}

// TestLWMLoss checks the per-modality normalisation: the loss is
// 0.5·CE_vision + 0.5·CE_text with each CE averaged over its own tokens.
func TestLWMLoss(t *testing.T) {
	m, c := tinyModel(t, LWM, 1)
	b := tinyBatch(t, c, 1)
	out, err := m.Forward(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	want := 0.5*out.Terms["ce_text"] + 0.5*out.Terms["ce_vision"]
	if d := out.Loss.Item() - want; d > 1e-5 || d < -1e-5 {
		t.Errorf("loss %v, want 0.5·%v + 0.5·%v", out.Loss.Item(), out.Terms["ce_text"], out.Terms["ce_vision"])
	}
	ids, vis := LWMVision(c, [][]int32{{1, 2}, {3, 4}})
	wantIDs := []int32{c.Special.VisionBeg, 1, 2, c.EOF(), 3, 4, c.EOV(), c.Special.VisionEnd}
	wantVis := []bool{false, true, true, true, true, true, true, false}
	if !reflect.DeepEqual(ids, wantIDs) || !reflect.DeepEqual(vis, wantVis) {
		t.Errorf("LWMVision(2 frames) = %v %v, want %v %v", ids, vis, wantIDs, wantVis)
	}
}

func TestBadImages(t *testing.T) {
	for _, f := range []Family{BLIP2, QwenVL, LLaVA, VILA} {
		m, c := tinyModel(t, f, 1)
		b := tinyBatch(t, c, 1)
		n := b.Images.Shape[0]
		b.Images = kernels.Zeros(n, 3, 15, 15)
		if _, err := m.Forward(nil, b); err == nil || !strings.Contains(err.Error(), "batch: images: shape [") {
			t.Errorf("%s with 15 px images: error %v, want one naming the images' shape", f, err)
		}
	}
}

// TestDownsample2x2 pins the neighbour order of VILA-1.5's DownSampleBlock:
// PyTorch's flat_square on a 4×4 grid of scalars 0..15 gives
// [[0 1 4 5] [2 3 6 7] [8 9 12 13] [10 11 14 15]] (computed with torch 1.13).
func TestDownsample2x2(t *testing.T) {
	x := kernels.Zeros(1, 16, 1)
	for i := range x.Data {
		x.Data[i] = float32(i)
	}
	got := downsample2x2(nil, x, 4, 4)
	want := []float32{0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15}
	if !reflect.DeepEqual(got.Shape, []int{1, 4, 4}) || !reflect.DeepEqual(got.Data, want) {
		t.Errorf("downsample2x2(0..15 on 4×4) = %v %v, want [1 4 4] %v", got.Shape, got.Data, want)
	}
}
