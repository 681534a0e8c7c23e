package hf

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/safetensors"
	"github.com/loomtrain/loom/models/vit"
)

// visionTol is the largest |Loom − PyTorch| accepted: Loom runs in
// float32, the reference (testdata/gen_*.py) in float64 on the same
// stored weights.
const visionTol = 1e-5

// readRef reads a reference JSON of flat float lists (null entries are
// dropped).
func readRef(t *testing.T, name string) map[string][]float64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	out := map[string][]float64{}
	for k, v := range raw {
		if string(v) == "null" {
			continue
		}
		var f []float64
		if err := json.Unmarshal(v, &f); err != nil {
			t.Fatalf("%s: %s: %v", name, k, err)
		}
		out[k] = f
	}
	return out
}

// refImages returns the reference's pixel_values for key prefix k ("" or
// "20x20_").
func refImages(t *testing.T, ref map[string][]float64, k string) *kernels.Tensor {
	t.Helper()
	shape, px := ref[k+"shape"], ref[k+"pixel_values"]
	if len(shape) != 4 || px == nil {
		t.Fatalf("reference has no %spixel_values/shape", k)
	}
	x := kernels.Zeros(int(shape[0]), int(shape[1]), int(shape[2]), int(shape[3]))
	for i, v := range px {
		x.Data[i] = float32(v)
	}
	return x
}

// compare fails unless got and want agree within visionTol, reporting the
// worst element.
func compare(t *testing.T, what string, got *kernels.Tensor, want []float64) float64 {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: Loom returned nothing, PyTorch %d values", what, len(want))
	}
	if len(got.Data) != len(want) {
		t.Fatalf("%s: Loom %v (%d values), PyTorch %d values", what, got.Shape, len(got.Data), len(want))
	}
	worst, at := 0.0, 0
	for i, w := range want {
		if d := math.Abs(float64(got.Data[i]) - w); d > worst || math.IsNaN(d) {
			worst, at = d, i
		}
	}
	if worst > visionTol || math.IsNaN(worst) {
		t.Errorf("%s: max |Loom − PyTorch| = %.3g at %d (Loom %v, PyTorch %v), want ≤ %g", what, worst, at, got.Data[at], want[at], visionTol)
	}
	return worst
}

// openTower opens a testdata checkpoint, builds the tower and loads it.
func openTower(t *testing.T, dir string, cfg vit.Config, m Mapping) (*vit.ViT, *nn.Params, *Plan) {
	t.Helper()
	ck, err := Open(context.Background(), Dir(filepath.Join("testdata", dir)))
	if err != nil {
		t.Fatal(err)
	}
	p := nn.NewParams()
	v, err := vit.New(p, nn.Rng(1), "vit", cfg)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := Load(context.Background(), ck, m, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.RandomInit) > 0 {
		t.Errorf("%s: parameters left at their initialisation: %v", dir, pl.RandomInit)
	}
	return v, p, pl
}

func readConfig(t *testing.T, dir string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkTower compares every output the reference holds for key prefix k:
// last_hidden_state, pooler_output and hidden_states[-2] through Encode,
// and the same through Forward's selections.
func checkTower(t *testing.T, name string, v *vit.ViT, ref map[string][]float64, k string) {
	t.Helper()
	img := refImages(t, ref, k)
	out := v.Encode(nil, img, true)
	var worst float64
	worst = max(worst, compare(t, name+" "+k+"last_hidden_state", out.Last, ref[k+"last_hidden_state"]))
	if want, ok := ref[k+"pooler_output"]; ok {
		worst = max(worst, compare(t, name+" "+k+"pooler_output", out.Pooled, want))
	} else if out.Pooled != nil {
		t.Errorf("%s: Loom has a pooled output, the reference none", name)
	}
	worst = max(worst, compare(t, name+" "+k+"hidden_states[-2]", out.Hidden[len(out.Hidden)-2], ref[k+"hidden_states_-2"]))
	compare(t, name+" "+k+"Forward(LastAll)", v.Forward(nil, img, vit.LastAll), ref[k+"last_hidden_state"])
	pen := ref[k+"hidden_states_-2"]
	if v.Cfg.ClassToken { // PenultimatePatches drops the class token
		b, w := int(img.Shape[0]), v.Cfg.Width
		n := len(pen) / b / w
		var patches []float64
		for i := 0; i < b; i++ {
			patches = append(patches, pen[(i*n+1)*w:(i+1)*n*w]...)
		}
		pen = patches
	}
	compare(t, name+" "+k+"Forward(PenultimatePatches)", v.Forward(nil, img, vit.PenultimatePatches), pen)
	t.Logf("%s %s: max |Δ| %.2g", name, k, worst)
}

func TestCLIPVisionAgainstPyTorch(t *testing.T) {
	cfg, err := CLIPVisionConfig(readConfig(t, "clip"))
	if err != nil {
		t.Fatal(err)
	}
	want := vit.Config{ImageSize: 12, PatchSize: 4, Channels: 3, Width: 16, Layers: 3, Heads: 2, MLPDim: 32,
		ClassToken: true, PreNorm: true, Act: nn.ActQuickGELU, Eps: 1e-5, PostNorm: vit.PostNormPooled}
	if cfg != want {
		t.Fatalf("CLIPVisionConfig = %+v, want %+v", cfg, want)
	}
	v, _, pl := openTower(t, "clip", cfg, CLIPVisionMapping(cfg, "vision_model.", "vit."))
	if !reflect.DeepEqual(pl.Ignored, []string{"vision_model.embeddings.position_ids"}) {
		t.Errorf("ignored %v, want the position_ids buffer", pl.Ignored)
	}
	ref := readRef(t, "clip_out.json")
	for _, k := range []string{"", "20x20_", "16x8_", "14x15_"} { // 14x15: 3×3 patches, 2 and 3 px left out // 16x8: a 4×2 grid from the 3×3 table
		checkTower(t, "CLIP", v, ref, k)
	}
}

// TestCLIPModelF16: the vision tower of a whole CLIPModel stored in F16 in
// two shards; the text tower, projections and logit_scale are ignored.
func TestCLIPModelF16(t *testing.T) {
	cfg, err := CLIPVisionConfig(readConfig(t, "clip_model"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Act != nn.ActGELU || cfg.Width != 16 {
		t.Fatalf("vision_config read as %+v", cfg)
	}
	v, _, pl := openTower(t, "clip_model", cfg, CLIPVisionMapping(cfg, "vision_model.", "vit."))
	for _, ig := range pl.Ignored {
		if !strings.HasPrefix(ig, "text_") && ig != "visual_projection.weight" && ig != "logit_scale" {
			t.Errorf("ignored %q", ig)
		}
	}
	if len(pl.Ignored) != 7 {
		t.Errorf("ignored %v, want the 7 text-side tensors", pl.Ignored)
	}
	checkTower(t, "CLIPModel/F16", v, readRef(t, "clip_model_out.json"), "")
}

func TestCLIPVisionConfigSources(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		want       vit.Config
		err        string
	}{
		{"defaults", `{"model_type":"clip_vision_model"}`,
			vit.Config{ImageSize: 224, PatchSize: 32, Channels: 3, Width: 768, Layers: 12, Heads: 12, MLPDim: 3072, ClassToken: true, PreNorm: true, Act: nn.ActQuickGELU, Eps: 1e-5, PostNorm: vit.PostNormPooled}, ""},
		{"llava vision_config", `{"model_type":"llava","vision_config":{"hidden_size":1024,"image_size":336,"intermediate_size":4096,"model_type":"clip_vision_model","num_attention_heads":16,"num_hidden_layers":24,"patch_size":14,"projection_dim":768}}`,
			vit.Config{ImageSize: 336, PatchSize: 14, Channels: 3, Width: 1024, Layers: 24, Heads: 16, MLPDim: 4096, ClassToken: true, PreNorm: true, Act: nn.ActQuickGELU, Eps: 1e-5, PostNorm: vit.PostNormPooled}, ""},
		{"siglip", `{"model_type":"siglip_vision_model"}`, vit.Config{}, `model_type "siglip_vision_model"`},
		{"activation", `{"hidden_act":"relu"}`, vit.Config{}, `hidden_act "relu"`},
		{"heads", `{"hidden_size":10,"num_attention_heads":3}`, vit.Config{}, "not a multiple of heads"},
	} {
		got, err := CLIPVisionConfig([]byte(tc.json))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: CLIPVisionConfig error %v, want one containing %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: CLIPVisionConfig = %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

// roundTrip exports p through m with the config JSON, opens the result and
// loads it into a fresh tower built from the re-read config: every
// parameter must come back bit for bit (F32 export).
func roundTrip(t *testing.T, name string, p *nn.Params, m func(vit.Config) Mapping, cfgJSON []byte, readCfg func([]byte) (vit.Config, error), cfg vit.Config) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := Export(ctx, Dir(dir), m(cfg), p, ExportOptions{Files: map[string][]byte{ConfigFile: cfgJSON}, ShardBytes: 8000}); err != nil {
		t.Fatal(err)
	}
	ck, err := Open(ctx, Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	cfg2, err := readCfg(ck.Config())
	if err != nil {
		t.Fatal(err)
	}
	if cfg2 != cfg {
		t.Fatalf("%s: config after export %+v, before %+v", name, cfg2, cfg)
	}
	q := nn.NewParams()
	if _, err := vit.New(q, nn.Rng(99), "vit", cfg2); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(ctx, ck, m(cfg2), q); err != nil {
		t.Fatal(err)
	}
	for _, a := range p.All() {
		b := q.Get(a.Name)
		for i := range a.Data {
			if math.Float32bits(a.Data[i]) != math.Float32bits(b.Data[i]) {
				t.Fatalf("%s: %s[%d] = %v after export and import, %v before", name, a.Name, i, b.Data[i], a.Data[i])
			}
		}
	}
}

func TestCLIPVisionRoundTrip(t *testing.T) {
	cfg, _ := CLIPVisionConfig(readConfig(t, "clip"))
	_, p, _ := openTower(t, "clip", cfg, CLIPVisionMapping(cfg, "vision_model.", "vit."))
	js, err := CLIPVisionConfigJSON(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := func(c vit.Config) Mapping { return CLIPVisionMapping(c, "vision_model.", "vit.") }
	roundTrip(t, "CLIP", p, m, js, CLIPVisionConfig, cfg)
	if _, err := CLIPVisionConfigJSON(vit.Config{ImageSize: 8, PatchSize: 4, Channels: 3, Width: 8, Layers: 1, Heads: 2, MLPDim: 8, PatchBias: true, Act: nn.ActGELU}); err == nil {
		t.Error("CLIPVisionConfigJSON accepted a tower with a patch bias and no class token")
	}
}

// rewrite copies testdata/dir's config.json and model.safetensors into a
// temporary directory with edit applied to the tensors.
func rewrite(t *testing.T, dir string, edit func([]safetensors.Tensor) []safetensors.Tensor) string {
	t.Helper()
	f, err := safetensors.ReadFile(filepath.Join("testdata", dir, SingleFile))
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, in := range f.Tensors() {
		raw, err := f.Raw(in.Name)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.Tensor{Name: in.Name, DType: in.DType, Shape: in.Shape, Data: bytes.Clone(raw)})
	}
	out := t.TempDir()
	if err := safetensors.WriteFile(filepath.Join(out, SingleFile), edit(ts), nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, ConfigFile), readConfig(t, dir), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// dropTensor returns ts without the named tensor.
func dropTensor(ts []safetensors.Tensor, name string) []safetensors.Tensor {
	out := ts[:0]
	for _, x := range ts {
		if x.Name != name {
			out = append(out, x)
		}
	}
	return out
}

// checkLoadErrors: a missing, an unexpected and a wrong-shape tensor each
// fail the load with the file and the tensor named.
func checkLoadErrors(t *testing.T, dir string, cfg vit.Config, m Mapping, victim string) {
	t.Helper()
	for _, tc := range []struct {
		name string
		edit func([]safetensors.Tensor) []safetensors.Tensor
		want []string
	}{
		{"missing", func(ts []safetensors.Tensor) []safetensors.Tensor { return dropTensor(ts, victim) },
			[]string{"missing tensor", `"` + victim + `"`}},
		{"unexpected", func(ts []safetensors.Tensor) []safetensors.Tensor {
			return append(ts, safetensors.F32Tensor("vision_model.extra.weight", []int{2}, []float32{1, 2}))
		}, []string{SingleFile, "unexpected tensor", `"vision_model.extra.weight"`}},
		{"shape", func(ts []safetensors.Tensor) []safetensors.Tensor {
			for i := range ts {
				if ts[i].Name == victim {
					n := len(ts[i].Data) / ts[i].DType.Size()
					ts[i].Shape = []int{n, 1}
				}
			}
			return ts
		}, []string{SingleFile, `"` + victim + `"`, "shape"}},
	} {
		d := rewrite(t, dir, tc.edit)
		ck, err := Open(context.Background(), Dir(d))
		if err != nil {
			t.Fatal(err)
		}
		p := nn.NewParams()
		if _, err := vit.New(p, nn.Rng(1), "vit", cfg); err != nil {
			t.Fatal(err)
		}
		_, err = Load(context.Background(), ck, m, p)
		if err == nil {
			t.Errorf("%s %s: Load succeeded", dir, tc.name)
			continue
		}
		for _, w := range append(tc.want, d) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s %s: error %q does not name %q", dir, tc.name, err, w)
			}
		}
	}
}

func TestCLIPVisionLoadErrors(t *testing.T) {
	cfg, _ := CLIPVisionConfig(readConfig(t, "clip"))
	checkLoadErrors(t, "clip", cfg, CLIPVisionMapping(cfg, "vision_model.", "vit."), "vision_model.encoder.layers.1.mlp.fc1.weight")
}

// TestBicubicMatchesTorch: nn.BicubicMatrix (the ViT's position
// interpolation) and kernels' InterpolateBicubic against
// F.interpolate(mode="bicubic", align_corners=False) on up-, down-,
// non-square and identity resizes.
func TestBicubicMatchesTorch(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "clip_bicubic.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		In, Out []int
		X, Y    []float64
	}
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("clip_bicubic.json holds no cases")
	}
	for _, c := range cases {
		if len(c.X) == 0 || len(c.Y) == 0 {
			t.Fatalf("case %v→%v has no data", c.In, c.Out)
		}
		ih, iw, oh, ow := c.In[0], c.In[1], c.Out[0], c.Out[1]
		ch := len(c.X) / (ih * iw)
		x := kernels.Zeros(ch, ih, iw)
		for i, v := range c.X {
			x.Data[i] = float32(v)
		}
		// BicubicMatrix acts on row-major grids of vectors [ih·iw, C].
		grid := kernels.Zeros(ih*iw, ch)
		for k := 0; k < ch; k++ {
			for i := 0; i < ih*iw; i++ {
				grid.Data[i*ch+k] = x.Data[k*ih*iw+i]
			}
		}
		y := (*kernels.Tape)(nil).Matmul(nn.BicubicMatrix(ih, iw, oh, ow), grid)
		got := kernels.Zeros(ch, oh, ow)
		for k := 0; k < ch; k++ {
			for i := 0; i < oh*ow; i++ {
				got.Data[k*oh*ow+i] = y.Data[i*ch+k]
			}
		}
		name := func(op string) string { return fmt.Sprintf("%s %v→%v", op, c.In, c.Out) }
		d1 := compare(t, name("BicubicMatrix"), got, c.Y)
		d2 := compare(t, name("InterpolateBicubic"), (*kernels.Tape)(nil).InterpolateBicubic(x, oh, ow), c.Y)
		t.Logf("%v→%v (%d channels): max |Δ| BicubicMatrix %.2g, InterpolateBicubic %.2g", c.In, c.Out, ch, d1, d2)
	}
}
