package hf

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"slices"
	"sort"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/safetensors"
	"github.com/loomtrain/loom/models/vqgan"
)

// vqganRef is testdata/vqgan_lwm_tiny.json, written by gen_vqgan.py from
// its PyTorch port of lwm/vqgan.py (float64, NHWC).
type vqganRef struct {
	Config struct {
		Resolution     int   `json:"resolution"`
		NumChannels    int   `json:"num_channels"`
		HiddenChannels int   `json:"hidden_channels"`
		ChannelMult    []int `json:"channel_mult"`
		NumResBlocks   int   `json:"num_res_blocks"`
		ZChannels      int   `json:"z_channels"`
		NumEmbeddings  int   `json:"num_embeddings"`
		EmbedDim       int   `json:"quantized_embed_dim"`
		Groups         int   `json:"groups"`
	} `json:"config"`
	Input, Latents, Decoded refArray
	Codes                   struct {
		Shape []int   `json:"shape"`
		Data  []int32 `json:"data"`
	} `json:"codes"`
	MinCodeMargin   float64          `json:"min_code_margin"`
	ClippedFraction float64          `json:"clipped_fraction"`
	FullShapes      map[string][]int `json:"lwm_full_shapes"`
	FullParams      int              `json:"lwm_full_params"`
}

type refArray struct {
	Shape []int     `json:"shape"`
	Data  []float64 `json:"data"`
}

func (r *vqganRef) UnmarshalJSON(b []byte) error {
	type plain vqganRef
	var aux struct {
		*plain
		Input   refArray `json:"input_nhwc"`
		Latents refArray `json:"latents_nhwc"`
		Decoded refArray `json:"decoded_nhwc"`
	}
	aux.plain = (*plain)(r)
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	r.Input, r.Latents, r.Decoded = aux.Input, aux.Latents, aux.Decoded
	return nil
}

func readVQGANRef(t *testing.T) (*vqganRef, []byte) {
	t.Helper()
	b, err := os.ReadFile("testdata/vqgan_lwm_tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	var r vqganRef
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	pk, err := os.ReadFile("testdata/vqgan_lwm_tiny.pkl")
	if err != nil {
		t.Fatal(err)
	}
	return &r, pk
}

// nhwcToNCHW turns the reference's NHWC array into a Loom tensor.
func nhwcToNCHW(a refArray) *kernels.Tensor {
	n, h, w, c := a.Shape[0], a.Shape[1], a.Shape[2], a.Shape[3]
	t := kernels.Zeros(n, c, h, w)
	for b := 0; b < n; b++ {
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				for k := 0; k < c; k++ {
					t.Data[((b*c+k)*h+y)*w+x] = float32(a.Data[((b*h+y)*w+x)*c+k])
				}
			}
		}
	}
	return t
}

// maxDiff is the largest |got − want| over want's NHWC values.
func maxDiff(t *testing.T, got *kernels.Tensor, want refArray) float64 {
	t.Helper()
	n, h, w, c := want.Shape[0], want.Shape[1], want.Shape[2], want.Shape[3]
	if !slices.Equal(got.Shape, []int{n, c, h, w}) {
		t.Fatalf("shape %v, want NCHW of %v", got.Shape, want.Shape)
	}
	g := nhwcToNCHW(want)
	d := 0.0
	for i, v := range got.Data {
		d = max(d, math.Abs(float64(v)-float64(g.Data[i])))
	}
	// the conversion to float32 above rounds want by at most 2^-24·|want|,
	// below the tolerances used here.
	return d
}

func tinyLWMConfig(r *vqganRef) vqgan.Config {
	c := r.Config
	return vqgan.Config{ImageSize: c.Resolution, Channels: c.NumChannels, Base: c.HiddenChannels, Mult: c.ChannelMult,
		NumRes: c.NumResBlocks, Groups: c.Groups, CodeDim: c.EmbedDim, Codebook: c.NumEmbeddings, ZChannels: c.ZChannels, Beta: 0.25}
}

// TestLWMVQGANReference loads the tiny LWM-layout pickle into Loom's VQGAN
// and compares encoder latents, codes and decoded pixels with the PyTorch
// port of lwm/vqgan.py.
func TestLWMVQGANReference(t *testing.T) {
	r, pk := readVQGANRef(t)
	ctx := context.Background()
	ck, err := OpenPickle(ctx, "testdata/vqgan_lwm_tiny.pkl", pk)
	if err != nil {
		t.Fatal(err)
	}
	want := tinyLWMConfig(r)
	got, err := LWMVQGANConfig(ck)
	if err != nil {
		t.Fatal(err)
	}
	if got.Groups != 32 {
		t.Errorf("LWMVQGANConfig: Groups %d, want LWM's 32", got.Groups)
	}
	got.Groups, got.ImageSize = want.Groups, want.ImageSize // not in the shapes
	if !slices.Equal(got.Mult, want.Mult) || got.Base != want.Base || got.NumRes != want.NumRes || got.ZChannels != want.ZChannels ||
		got.CodeDim != want.CodeDim || got.Codebook != want.Codebook || got.Channels != want.Channels {
		t.Fatalf("LWMVQGANConfig = %+v, want %+v", got, want)
	}
	p := nn.NewParams()
	v, err := vqgan.New(p, nn.Rng(1), "vqgan", want)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Load(ctx, ck, LWMVQGANMapping(want, "vqgan"), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.RandomInit) != 0 || len(plan.Items) != len(p.Names()) {
		t.Fatalf("plan: %d items for %d parameters, random %v", len(plan.Items), len(p.Names()), plan.RandomInit)
	}

	x := nhwcToNCHW(r.Input)
	z := v.Encode(nil, x)
	if d := maxDiff(t, z, r.Latents); d > 1e-5 {
		t.Errorf("encoder latents: max |Loom − reference| = %.3g, want ≤ 1e-5", d)
	} else {
		t.Logf("encoder latents: max |Loom − reference| = %.3g (latents up to %.3g)", d, absMax(r.Latents.Data))
	}
	_, codes, _ := v.Quantize(nil, z)
	if !slices.Equal(codes, r.Codes.Data) {
		t.Fatalf("codes differ (reference margin %.3g):\n got %v\nwant %v", r.MinCodeMargin, codes, r.Codes.Data)
	}
	if tok := v.Tokenize(x); !slices.Equal(slices.Concat(tok...), r.Codes.Data) {
		t.Errorf("Tokenize gives other codes than Quantize(Encode)")
	}
	h, w := r.Codes.Shape[1], r.Codes.Shape[2]
	img := v.DecodeCodes(nil, codes, r.Codes.Shape[0], h, w)
	if d := maxDiff(t, img, r.Decoded); d > 1e-5 {
		t.Errorf("decoded pixels: max |Loom − reference| = %.3g, want ≤ 1e-5", d)
	} else {
		t.Logf("decoded pixels: max |Loom − reference| = %.3g (%.1f%% clipped)", d, 100*r.ClippedFraction)
	}
}

func absMax(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, math.Abs(x))
	}
	return m
}

// TestLWMVQGANFullSize checks the mapping at LWM's real size without its
// weights: the Flax key paths the port lists for the default VQGANConfig
// are exactly the mapping's, and their sizes add up to Loom's count.
func TestLWMVQGANFullSize(t *testing.T) {
	r, _ := readVQGANRef(t)
	c := vqgan.Config{ImageSize: 256, Channels: 3, Base: 128, Mult: []int{1, 2, 2, 4, 6}, NumRes: 2, Groups: 32, CodeDim: 64, Codebook: 8192, ZChannels: 64}
	m := LWMVQGANMapping(c, "vqgan")
	var names []string
	for _, e := range m.Entries {
		names = append(names, e.HF)
	}
	var want []string
	total := 0
	for n, s := range r.FullShapes {
		want = append(want, n)
		k := 1
		for _, d := range s {
			k *= d
		}
		total += k
	}
	sort.Strings(names)
	sort.Strings(want)
	if !slices.Equal(names, want) {
		t.Errorf("mapping names differ from LWM's:\n got %v\nwant %v", names, want)
	}
	if got := vqgan.ParamCount(c); got != total || got != r.FullParams {
		t.Errorf("ParamCount(LWM) = %d; LWM's tree holds %d (%d)", got, total, r.FullParams)
	}
	// Each entry's Loom shape after Convert matches the Flax shape's
	// transpose: checked on the tiny file by Load; here the shapes' ranks.
	for _, e := range m.Entries {
		s := r.FullShapes[e.HF]
		if e.Convert != nil {
			if _, _, err := e.Convert(s, nil); err != nil {
				t.Errorf("%s: %v", e.HF, err)
			}
		}
	}
}

// TestConvertLWMVQGAN converts the pickle to Loom-named safetensors, loads
// the file the ordinary way, and checks that Export writes the Flax
// tensors back bit for bit (HWIO kernels).
func TestConvertLWMVQGAN(t *testing.T) {
	r, pk := readVQGANRef(t)
	ts, c, err := ConvertLWMVQGAN(pk)
	if err != nil {
		t.Fatal(err)
	}
	if c.Groups != 32 || c.ImageSize != 256 {
		t.Errorf("config %+v: want LWM's 32 groups and 256 px", c)
	}
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	cfg := tinyLWMConfig(r)
	p := nn.NewParams()
	v, err := vqgan.New(p, nn.Rng(2), "vqgan", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Load(f, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	if tok := v.Tokenize(nhwcToNCHW(r.Input)); !slices.Equal(slices.Concat(tok...), r.Codes.Data) {
		t.Errorf("codes after ConvertLWMVQGAN differ from the reference")
	}

	dir := t.TempDir()
	if _, err := Export(context.Background(), Dir(dir), LWMVQGANMapping(cfg, "vqgan"), p, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := safetensors.ReadFile(dir + "/" + SingleFile)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := Unpickle(pk)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := FlaxParams(tree)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Names()) != len(orig) {
		t.Errorf("export wrote %d tensors, the pickle has %d", len(out.Names()), len(orig))
	}
	for name, a := range orig {
		in, ok := out.Info(name)
		if !ok {
			t.Errorf("export lacks %s", name)
			continue
		}
		got, err := out.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		wantV, _ := a.Float32()
		if !slices.Equal(in.Shape, a.Shape) || !slices.Equal(got, wantV) {
			t.Errorf("export %s: shape %v, want %v, or values differ", name, in.Shape, a.Shape)
		}
	}
}

// TestLWMVQGANMappingErrors: a pickle missing a tensor or holding an extra
// one fails the plan, naming it.
func TestLWMVQGANMappingErrors(t *testing.T) {
	r, pk := readVQGANRef(t)
	cfg := tinyLWMConfig(r)
	p := nn.NewParams()
	if _, err := vqgan.New(p, nn.Rng(1), "vqgan", cfg); err != nil {
		t.Fatal(err)
	}
	ck, err := OpenPickle(context.Background(), "tiny.pkl", pk)
	if err != nil {
		t.Fatal(err)
	}
	// One level fewer in the config: the checkpoint's last level is extra.
	small := cfg
	small.Mult = cfg.Mult[:2]
	ps := nn.NewParams()
	if _, err := vqgan.New(ps, nn.Rng(1), "vqgan", small); err != nil {
		t.Fatal(err)
	}
	if _, err := MakePlan(ck, LWMVQGANMapping(small, "vqgan"), ps); err == nil {
		t.Error("a two-level mapping accepted the three-level pickle")
	} else {
		t.Log(err)
	}
	// Decoder with NumRes blocks only (Loom's old layout): ResnetBlock_2 is unexpected.
	m := LWMVQGANMapping(cfg, "vqgan")
	m.Entries = slices.DeleteFunc(m.Entries, func(e Entry) bool {
		return e.HF == "decoder/UpsamplingBlock_0/ResnetBlock_2/Conv_1/kernel"
	})
	if _, err := MakePlan(ck, m, p); err == nil {
		t.Error("the plan accepted an unread tensor")
	} else {
		t.Log(err)
	}
}

func TestPermute4RoundTrip(t *testing.T) {
	shape := []int{3, 2, 4, 5} // kh, kw, in, out
	v := make([]float32, 120)
	for i := range v {
		v[i] = float32(i)
	}
	s, o, err := hwioToOIHW(shape, v)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s, []int{5, 4, 3, 2}) {
		t.Fatalf("shape %v", s)
	}
	// element [o=1, i=2, y=0, x=1] is HWIO [0, 1, 2, 1] = ((0·2+1)·4+2)·5+1
	if got := o[((1*4+2)*3+0)*2+1]; got != 31 {
		t.Errorf("OIHW[1,2,0,1] = %v, want 31", got)
	}
	s2, back, err := oihwToHWIO(s, o)
	if err != nil || !slices.Equal(s2, shape) || !slices.Equal(back, v) {
		t.Errorf("round trip: %v %v", s2, err)
	}
}
