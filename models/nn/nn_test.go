package nn

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/safetensors"
)

func tree() *Params {
	p := NewParams()
	rng := Rng(1)
	NewLinear(p, rng, "vit.blocks.0.attn.q", 4, 4, true)
	NewLayerNorm(p, "ln_vision", 4, 1e-6)
	NewLinear(p, rng, "qformer.layer.0.crossattention.query", 4, 4, true)
	NewLinear(p, rng, "qformer.layer.0.intermediate.dense", 4, 8, true)
	NewLinear(p, rng, "projector.0", 4, 6, false)
	return p
}

func TestFreezeDropSelect(t *testing.T) {
	p := tree()
	if got, want := p.Count(), (16+4)+8+(16+4)+(32+8)+24; got != want {
		t.Errorf("Count() = %d, want %d", got, want)
	}
	n, err := p.Freeze("vit.*")
	if err != nil || n != 2 {
		t.Fatalf("Freeze(vit.*) = %d, %v; want 2, nil", n, err)
	}
	if p.Get("vit.blocks.0.attn.q.weight").RequiresGrad() || !p.Frozen("vit.blocks.0.attn.q.bias") {
		t.Error("vit.* still requires grad after Freeze")
	}
	if got := len(p.Trainable()); got != 7 {
		t.Errorf("len(Trainable()) = %d after freezing 2 of 9, want 7", got)
	}
	if _, err := p.Freeze("vti.*"); err == nil || !strings.Contains(err.Error(), `"vti.*" matches no parameter`) {
		t.Errorf("Freeze(vti.*) error = %v, want a no-match error", err)
	}
	if _, err := p.Unfreeze("vit.blocks.0.attn.q.weight"); err != nil || !p.Get("vit.blocks.0.attn.q.weight").RequiresGrad() {
		t.Errorf("Unfreeze: %v", err)
	}
	// A module name without wildcards selects its subtree.
	if got := len(p.Select("projector")); got != 1 {
		t.Errorf("Select(projector) = %d params, want 1", got)
	}
	if got := len(p.Select("qformer.layer.*.crossattention.*")); got != 2 {
		t.Errorf("Select(qformer.layer.*.crossattention.*) = %d params, want 2", got)
	}
	n, err = p.Drop("qformer.layer.*.intermediate.*")
	if err != nil || n != 2 || p.Get("qformer.layer.0.intermediate.dense.weight") != nil {
		t.Errorf("Drop = %d, %v; param still present: %v", n, err, p.Get("qformer.layer.0.intermediate.dense.weight") != nil)
	}
	if _, err := p.Freeze("[bad"); err == nil {
		t.Error("Freeze([bad) accepted a malformed pattern")
	}
}

func saveToFile(t *testing.T, p *Params) *safetensors.File {
	t.Helper()
	var buf bytes.Buffer
	if err := p.Save(&buf, map[string]string{"family": "test"}); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSaveLoadRoundTrip(t *testing.T) {
	src := tree()
	f := saveToFile(t, src)
	dst := NewParams()
	NewLinear(dst, Rng(99), "vit.blocks.0.attn.q", 4, 4, true)
	NewLayerNorm(dst, "ln_vision", 4, 1e-6)
	NewLinear(dst, Rng(99), "qformer.layer.0.crossattention.query", 4, 4, true)
	NewLinear(dst, Rng(99), "qformer.layer.0.intermediate.dense", 4, 8, true)
	NewLinear(dst, Rng(99), "projector.0", 4, 6, false)
	names, err := dst.Load(f, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 9 {
		t.Errorf("Load returned %d names, want 9", len(names))
	}
	for _, s := range src.All() {
		if !reflect.DeepEqual(dst.Get(s.Name).Data, s.Data) {
			t.Errorf("%s differs after Load", s.Name)
		}
	}
}

func TestLoadFailures(t *testing.T) {
	f := saveToFile(t, tree())
	tests := []struct {
		name  string
		build func(p *Params)
		opt   LoadOptions
		want  string
	}{
		{"missing", func(p *Params) {
			NewLinear(p, Rng(1), "projector.0", 4, 6, false)
			NewLinear(p, Rng(1), "projector.2", 6, 6, false)
		}, LoadOptions{Only: []string{"projector.*"}}, `parameter "projector.2.weight": missing from the file`},
		{"extra", func(p *Params) {
			NewLinear(p, Rng(1), "qformer.layer.0.crossattention.query", 4, 4, true)
		}, LoadOptions{Only: []string{"qformer.*"}}, `tensor "qformer.layer.0.intermediate.dense.weight": the model has no parameter`},
		{"shape", func(p *Params) {
			NewLinear(p, Rng(1), "projector.0", 4, 5, false)
		}, LoadOptions{Only: []string{"projector.*"}}, `tensor "projector.0.weight": shape [6 4] in the file, parameter "projector.0.weight" has shape [5 4]`},
		{"exact load of a partial model", func(p *Params) {
			NewLinear(p, Rng(1), "projector.0", 4, 6, false)
		}, LoadOptions{}, `extra tensor`},
	}
	for _, tc := range tests {
		p := NewParams()
		tc.build(p)
		before := p.All()[0].Clone()
		_, err := p.Load(f, tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Load error = %v, want one containing %q", tc.name, err, tc.want)
		}
		if !reflect.DeepEqual(before.Data, p.All()[0].Data) {
			t.Errorf("%s: a failed Load changed %s", tc.name, before.Name)
		}
	}
}

func TestPartialLoad(t *testing.T) {
	src := tree()
	f := saveToFile(t, src)
	// A stage-2 model: the Q-Former without its text-side FFN, plus a new
	// projection. Load the Q-Former explicitly, skipping the text side.
	dst := NewParams()
	NewLinear(dst, Rng(5), "qformer.layer.0.crossattention.query", 4, 4, true)
	NewLinear(dst, Rng(5), "llm_proj", 4, 8, true)
	names, err := dst.Load(f, LoadOptions{Only: []string{"qformer.*"}, Skip: []string{"qformer.layer.*.intermediate.*"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"qformer.layer.0.crossattention.query.weight", "qformer.layer.0.crossattention.query.bias"}; !reflect.DeepEqual(names, want) {
		t.Errorf("loaded %v, want %v", names, want)
	}
	if !reflect.DeepEqual(dst.Get("qformer.layer.0.crossattention.query.weight").Data, src.Get("qformer.layer.0.crossattention.query.weight").Data) {
		t.Error("Q-Former weight not loaded")
	}
	// Rename: load "projector.0" into a model that calls it "mm_projector.0".
	dst2 := NewParams()
	NewLinear(dst2, Rng(5), "mm_projector.0", 4, 6, false)
	if _, err := dst2.Load(f, LoadOptions{Only: []string{"mm_projector.*"}, Rename: map[string]string{"projector.": "mm_projector."}}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dst2.All()[0].Data, src.Get("projector.0.weight").Data) {
		t.Error("renamed tensor not loaded")
	}
}

func TestRoPEMatchesRotation(t *testing.T) {
	// RoPE on one head: pair (i, i+D/2) is rotated by angle pos·θ_i.
	const d, theta = 4, 10000.0
	pos := [][]int{{0, 3, 7}}
	x := kernels.Zeros(1, 1, 3, d)
	for i := range x.Data {
		x.Data[i] = float32(i%5) - 1.5
	}
	got := NewRoPE(pos, d, theta).Apply(nil, x)
	for ti, p := range pos[0] {
		for i := 0; i < d/2; i++ {
			a := float64(p) * math.Pow(theta, -2*float64(i)/d)
			x1, x2 := float64(x.Data[ti*d+i]), float64(x.Data[ti*d+i+d/2])
			w1 := x1*math.Cos(a) - x2*math.Sin(a)
			w2 := x2*math.Cos(a) + x1*math.Sin(a)
			if g1, g2 := float64(got.Data[ti*d+i]), float64(got.Data[ti*d+i+d/2]); math.Abs(g1-w1) > 1e-5 || math.Abs(g2-w2) > 1e-5 {
				t.Errorf("RoPE pos %d pair %d: got (%v, %v), want (%v, %v)", p, i, g1, g2, w1, w2)
			}
		}
	}
}

type posGolden struct {
	BicubicIn  []float64 `json:"bicubic_in"`
	BicubicOut []float64 `json:"bicubic_out"`
	SinCos     []float64 `json:"sincos_3x2x8"`
}

func TestPositionsAgainstTorch(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "pos_golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g posGolden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	in := make([]float32, len(g.BicubicIn))
	for i, v := range g.BicubicIn {
		in[i] = float32(v)
	}
	out := kernels.Tape{}
	got := out.Matmul(BicubicMatrix(3, 4, 5, 7), kernels.New(in, 12, 2))
	for i, w := range g.BicubicOut {
		if math.Abs(float64(got.Data[i])-w) > 1e-5 {
			t.Fatalf("BicubicMatrix(3,4→5,7)·x [%d] = %v, torch F.interpolate bicubic gives %v", i, got.Data[i], w)
		}
	}
	sc := SinCos2D(3, 2, 8)
	for i, w := range g.SinCos {
		if math.Abs(float64(sc.Data[i])-w) > 1e-6 {
			t.Fatalf("SinCos2D(3,2,8)[%d] = %v, MAE get_2d_sincos_pos_embed gives %v", i, sc.Data[i], w)
		}
	}
}

func TestAttendMasked(t *testing.T) {
	// With a causal mask the first query can only read the first value.
	q := kernels.Full(1, 1, 1, 2, 2)
	k := kernels.Full(1, 1, 1, 2, 2)
	v := kernels.New([]float32{1, 2, 3, 4}, 1, 1, 2, 2)
	out := Attend(nil, q, k, v, Bias(Causal(2)))
	want := []float32{1, 2, 2, 3}
	for i := range want {
		if math.Abs(float64(out.Data[i]-want[i])) > 1e-6 {
			t.Fatalf("Attend(causal) = %v, want %v", out.Data, want)
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name, pat string
		want      bool
	}{
		{"vit.encoder.layers.0.mlp.fc1.weight", "vit.*", true},
		{"vit.encoder.layers.0.mlp.fc1.weight", "vit", true},
		{"vitx.a", "vit", false},
		{"qformer.layer.0.output.dense.weight", "qformer.layer.*.output.*", true},
		{"qformer.layer.0.attention.output.dense.weight", "qformer.layer.*.output.*", false},
		{"qformer.layer.0.output_query.dense.weight", "qformer.layer.*.output.*", false},
		{"qformer.layer.10.crossattention.key.bias", "**.bias", true},
		{"qformer.layer.10.crossattention.key.bias", "qformer.**.key.*", true},
		{"llm.model.layers.3.mlp.up_proj.weight", "llm.model.layers.[0-2].*", false},
		{"llm.model.layers.3.mlp.up_proj.weight", "llm.model.layers.[0-3].*", true},
		{"qformer.temp", "qformer.temp", true},
		{"qformer.temp", "qformer.*", true},
		{"qformer", "qformer.*", false},
	}
	for _, tc := range tests {
		if got := Match(tc.name, tc.pat); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.name, tc.pat, got, tc.want)
		}
	}
}

// FuzzMatch: patterns come from recipe manifests. Matching must not panic,
// every name matches itself, "**" and a final "*" under its first segment
// match everything below, and a malformed pattern is reported by
// ValidatePatterns rather than matching silently.
func FuzzMatch(f *testing.F) {
	f.Add("qformer.layer.0.output.dense.weight", "qformer.layer.*.output.*")
	f.Add("vit.a", "[")
	f.Add("a..b", "**")
	f.Fuzz(func(t *testing.T, name, pat string) {
		got := Match(name, pat)
		if ValidatePatterns(pat) != nil && got && strings.ContainsAny(pat, "*?[") {
			t.Fatalf("Match(%q, malformed %q) = true", name, pat)
		}
		if !Match(name, name) {
			t.Fatalf("Match(%q, itself) = false", name)
		}
		if !Match(name, "**") {
			t.Fatalf("Match(%q, **) = false", name)
		}
		if i := strings.IndexByte(name, '.'); i > 0 && !strings.ContainsAny(name[:i], "*?[\\") && !Match(name, name[:i]+".*") {
			t.Fatalf("Match(%q, %q) = false", name, name[:i]+".*")
		}
	})
}
