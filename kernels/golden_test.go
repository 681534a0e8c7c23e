package kernels

import (
	"math"
	"testing"
)

// The golden file is written by testdata/golden/gen.py (PyTorch, float64
// math on float32 inputs). Regenerate with
//
//	/usr/bin/python3 kernels/testdata/golden/gen.py
const goldenPath = "testdata/golden/golden.safetensors"

// goldenTol: every value must be within 1e-5 of PyTorch's, relative to the
// larger of its own magnitude and the tensor's RMS (so that values that are
// tiny by cancellation are judged on the tensor's scale).
const goldenTol = 1e-5

type golden struct {
	t  *testing.T
	ts map[string]*stTensor
}

func loadGolden(t *testing.T) *golden {
	t.Helper()
	ts, err := readSafetensors(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	return &golden{t, ts}
}

func (g *golden) get(name string) *stTensor {
	g.t.Helper()
	v, ok := g.ts[name]
	if !ok {
		g.t.Fatalf("%s: no tensor %q", goldenPath, name)
	}
	return v
}

// tensor returns a fresh float32 tensor (requiring grad) from the file.
func (g *golden) tensor(name string) *Tensor {
	v := g.get(name)
	return New(append([]float32{}, v.f32...), v.shape...).SetRequiresGrad(true)
}

func (g *golden) ints(name string) []int32 { return g.get(name).i32 }

// compare checks got against the golden tensor name.
func (g *golden) compare(what string, got []float32, name string) {
	g.t.Helper()
	want := g.get(name).f32
	if len(got) != len(want) {
		g.t.Errorf("%s: %d values, golden %s has %d", what, len(got), name, len(want))
		return
	}
	var ss float64
	for _, w := range want {
		ss += float64(w) * float64(w)
	}
	rms := math.Sqrt(ss / float64(max(1, len(want))))
	worst, at := 0.0, 0
	for i := range want {
		e := math.Abs(float64(got[i])-float64(want[i])) / math.Max(math.Abs(float64(want[i])), rms)
		if math.IsNaN(e) {
			e = math.Inf(1)
		}
		if e > worst {
			worst, at = e, i
		}
	}
	if worst > goldenTol {
		g.t.Errorf("%s: element %d = %.8g, PyTorch %.8g (relative error %.2g > %g)", what, at, got[at], want[at], worst, goldenTol)
	}
}

// run builds the op on a tape from the named inputs, compares the output
// and the input gradients after backpropagating <case>.dout.
func (g *golden) run(c string, inputs []string, f func(tp *Tape, in []*Tensor) *Tensor) {
	g.t.Helper()
	tp := NewTape()
	in := make([]*Tensor, len(inputs))
	for i, n := range inputs {
		in[i] = g.tensor(c + "." + n)
	}
	out := f(tp, in)
	g.compare(c+" forward", out.Data, c+".out")
	tp.BackwardFrom(out, g.get(c+".dout").f32)
	for i, n := range inputs {
		g.compare(c+" d"+n, in[i].Grad, c+".d"+n)
	}
}

func TestGoldenOps(t *testing.T) {
	g := loadGolden(t)
	one := func(f func(tp *Tape, x *Tensor) *Tensor) func(tp *Tape, in []*Tensor) *Tensor {
		return func(tp *Tape, in []*Tensor) *Tensor { return f(tp, in[0]) }
	}
	g.run("matmul", []string{"a", "b"}, func(tp *Tape, in []*Tensor) *Tensor { return tp.Matmul(in[0], in[1]) })
	g.run("matmul_tt", []string{"a", "b"}, func(tp *Tape, in []*Tensor) *Tensor { return tp.MatmulT(in[0], in[1], true, true) })
	g.run("linear", []string{"x", "w", "b"}, func(tp *Tape, in []*Tensor) *Tensor { return tp.Linear(in[0], in[1], in[2]) })
	g.run("add_bcast", []string{"a", "b"}, func(tp *Tape, in []*Tensor) *Tensor { return tp.Add(in[0], in[1]) })
	g.run("mul_bcast", []string{"a", "b"}, func(tp *Tape, in []*Tensor) *Tensor { return tp.Mul(in[0], in[1]) })
	g.run("gelu_tanh", []string{"x"}, one((*Tape).GELU))
	g.run("gelu_erf", []string{"x"}, one((*Tape).GELUErf))
	g.run("silu", []string{"x"}, one((*Tape).SiLU))
	g.run("swiglu", []string{"g", "u"}, func(tp *Tape, in []*Tensor) *Tensor { return tp.SwiGLU(in[0], in[1]) })
	g.run("sum", []string{"x"}, one((*Tape).Sum))
	g.run("mean", []string{"x"}, one((*Tape).Mean))
	g.run("sum_axis1", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.SumAxis(x, 1) }))
	g.run("softmax", []string{"x"}, one((*Tape).Softmax))
	g.run("log_softmax", []string{"x"}, one((*Tape).LogSoftmax))
	tgt := g.ints("ce.targets")
	ign := CEOptions{HasIgnore: true, IgnoreIndex: -100}
	g.run("ce", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.CrossEntropy(x, tgt, ign) }))
	sm := ign
	sm.LabelSmoothing = 0.1
	g.run("ce_smooth", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.CrossEntropy(x, tgt, sm) }))
	w := ign
	w.Weights = g.get("ce_weighted.weights").f32
	g.run("ce_weighted", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.CrossEntropy(x, tgt, w) }))
	g.run("layernorm", []string{"x", "w", "b"}, func(tp *Tape, in []*Tensor) *Tensor { return tp.LayerNorm(in[0], in[1], in[2], 1e-5) })
	g.run("rmsnorm", []string{"x", "w"}, func(tp *Tape, in []*Tensor) *Tensor { return tp.RMSNorm(in[0], in[1], 1e-6) })
	g.run("permute", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.Permute(x, 2, 0, 3, 1) }))
	g.run("concat", []string{"a", "b"}, func(tp *Tape, in []*Tensor) *Tensor { return tp.Concat(1, in[0], in[1]) })
	g.run("slice", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.Slice(x, 1, 2, 6) }))
	g.run("sub_bcast", []string{"a", "b"}, func(tp *Tape, in []*Tensor) *Tensor { return tp.Sub(in[0], in[1]) })
	g.run("div_bcast", []string{"a", "b"}, func(tp *Tape, in []*Tensor) *Tensor { return tp.Div(in[0], in[1]) })
	g.run("scale", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.Scale(x, 0.37) }))
	g.run("add_scalar", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.AddScalar(x, 1.25) }))
	g.run("relu", []string{"x"}, one((*Tape).ReLU))
	g.run("tanh", []string{"x"}, one((*Tape).Tanh))
	g.run("sigmoid", []string{"x"}, one((*Tape).Sigmoid))
	g.run("exp", []string{"x"}, one((*Tape).Exp))
	g.run("square", []string{"x"}, one((*Tape).Square))
	g.run("mean_axis0", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.MeanAxis(x, 0) }))
	g.run("transpose", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.Transpose(x, 0, 2) }))
	g.run("split", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor {
		p := tp.Split(x, 1, 2, 4, 1)
		return tp.Concat(1, p[2], p[1], p[0])
	}))
	sel := g.ints("index_select.idx")
	g.run("index_select", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.IndexSelect(x, 1, sel) }))
	gidx := g.ints("gather.idx")
	g.run("gather", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.Gather(x, 1, gidx) }))
	ids := g.ints("embedding.ids")
	g.run("embedding", []string{"w"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.Embedding(x, ids) }))
	pos := g.ints("rope.pos")
	g.run("rope", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.RoPE(x, RoPEConfig{Theta: 10000, Pos: pos}) }))
	pos1m := g.ints("rope_theta1m.pos")
	g.run("rope_theta1m", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.RoPE(x, RoPEConfig{Theta: 1e6, Pos: pos1m}) }))
	rows, cols := g.ints("rope2d.rows"), g.ints("rope2d.cols")
	g.run("rope2d", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor {
		return tp.RoPE(x, RoPEConfig{Theta: 100, Rows: rows, Cols: cols})
	}))
	g.compare("SinCos2D(3, 5, 16)", SinCos2D(3, 5, 16).Data, "sincos2d.out")
	g.run("conv2d", []string{"x", "w", "b"}, func(tp *Tape, in []*Tensor) *Tensor { return tp.Conv2D(in[0], in[1], in[2], 2, 1) })
	g.run("patch_embed", []string{"x", "w", "b"}, func(tp *Tape, in []*Tensor) *Tensor { return tp.PatchEmbed(in[0], in[1], in[2]) })
	g.run("bicubic", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.InterpolateBicubic(x, 7, 3) }))
	g.run("bicubic_pos16to32", []string{"x"}, one(func(tp *Tape, x *Tensor) *Tensor { return tp.InterpolateBicubic(x, 32, 32) }))
}

func TestGoldenAttention(t *testing.T) {
	g := loadGolden(t)
	attn := func(opt AttnOptions) func(tp *Tape, in []*Tensor) *Tensor {
		return func(tp *Tape, in []*Tensor) *Tensor { return tp.Attention(in[0], in[1], in[2], opt) }
	}
	qkv := []string{"q", "k", "v"}
	g.run("attn_full", qkv, attn(AttnOptions{}))
	g.run("attn_causal", qkv, attn(AttnOptions{Causal: true}))
	g.run("attn_prefix", qkv, attn(AttnOptions{Causal: true, Prefix: 4}))
	seg, pos := g.ints("attn_packed.seg"), g.ints("attn_packed.pos")
	g.run("attn_packed", qkv, attn(AttnOptions{Causal: true, Mask: &AttnMask{QPos: pos, KPos: pos, QSeg: seg, KSeg: seg}}))
	var lens []int
	for _, l := range g.ints("attn_padding.lens") {
		lens = append(lens, int(l))
	}
	g.run("attn_padding", qkv, attn(AttnOptions{KeyLens: lens}))
}

func TestGoldenVQ(t *testing.T) {
	g := loadGolden(t)
	z, cb := g.tensor("vq.z"), g.tensor("vq.codebook")
	tp := NewTape()
	res := tp.VectorQuantize(z, cb, 0.25)
	want := g.ints("vq.indices")
	for i := range want {
		if res.Indices[i] != want[i] {
			t.Fatalf("VectorQuantize row %d: code %d, PyTorch %d", i, res.Indices[i], want[i])
		}
	}
	g.compare("VectorQuantize out", res.Out.Data, "vq.out")
	g.compare("VectorQuantize loss", res.Loss.Data, "vq.loss")
	tp.Backward(tp.Add(tp.Sum(tp.Mul(res.Out, New(g.get("vq.dout").f32, z.Shape...))), res.Loss))
	g.compare("VectorQuantize dz", z.Grad, "vq.dz")
	g.compare("VectorQuantize dcodebook", cb.Grad, "vq.dcodebook")
}

func TestGoldenAdamWAndClip(t *testing.T) {
	g := loadGolden(t)
	p1, p2 := g.tensor("adamw.p1"), g.tensor("adamw.p2")
	opt := NewAdamW([]*Tensor{p1, p2}, AdamWConfig{LR: 1e-2, WeightDecay: 0.1})
	for step := 0; step < 3; step++ {
		p1.Grad = append([]float32{}, g.get("adamw.g1_"+string(rune('0'+step))).f32...)
		p2.Grad = append([]float32{}, g.get("adamw.g2_"+string(rune('0'+step))).f32...)
		opt.Step()
	}
	g.compare("AdamW p1 (decayed)", p1.Data, "adamw.p1_final")
	g.compare("AdamW p2 (not decayed)", p2.Data, "adamw.p2_final")

	c1, c2 := g.tensor("clip.g1"), g.tensor("clip.g2")
	c1.Grad, c2.Grad = append([]float32{}, c1.Data...), append([]float32{}, c2.Data...)
	norm, err := ClipGradNorm([]*Tensor{c1, c2}, 2)
	if err != nil {
		t.Fatal(err)
	}
	g.compare("ClipGradNorm norm", []float32{norm}, "clip.norm")
	g.compare("ClipGradNorm g1", c1.Grad, "clip.g1_clipped")
	g.compare("ClipGradNorm g2", c2.Grad, "clip.g2_clipped")
}

func TestGoldenBF16(t *testing.T) {
	g := loadGolden(t)
	in, want := g.get("bf16.in").f32, g.get("bf16.out").u16
	got := make([]uint16, len(in))
	ToBF16(got, in)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ToBF16(%g [%#08x]) = %#04x, torch %#04x", in[i], math.Float32bits(in[i]), got[i], want[i])
		}
	}
}

// TestGoldenBlock runs one pre-norm transformer block (LayerNorm, fused QKV
// projection, causal attention, output projection, LayerNorm, GELU MLP, two
// residuals) and checks the output and every parameter gradient.
func TestGoldenBlock(t *testing.T) {
	g := loadGolden(t)
	names := []string{"x", "ln1_w", "ln1_b", "qkv_w", "qkv_b", "proj_w", "proj_b", "ln2_w", "ln2_b", "fc_w", "fc_b", "fc2_w", "fc2_b"}
	g.run("block", names, func(tp *Tape, in []*Tensor) *Tensor {
		p := map[string]*Tensor{}
		for i, n := range names {
			p[n] = in[i]
		}
		x := p["x"]
		b, s, d, h := x.Shape[0], x.Shape[1], x.Shape[2], 4
		hn := tp.LayerNorm(x, p["ln1_w"], p["ln1_b"], 1e-5)
		qkv := tp.Split(tp.Linear(hn, p["qkv_w"], p["qkv_b"]), -1, d, d, d)
		heads := func(t *Tensor) *Tensor { return tp.Reshape(t, b, s, h, d/h) }
		a := tp.Attention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]), AttnOptions{Causal: true})
		x = tp.Add(x, tp.Linear(tp.Reshape(a, b, s, d), p["proj_w"], p["proj_b"]))
		hn = tp.LayerNorm(x, p["ln2_w"], p["ln2_b"], 1e-5)
		return tp.Add(x, tp.Linear(tp.GELU(tp.Linear(hn, p["fc_w"], p["fc_b"])), p["fc2_w"], p["fc2_b"]))
	})
}
