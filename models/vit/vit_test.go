package vit

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
)

func cfg(layers int) Config {
	return Config{ImageSize: 8, PatchSize: 4, Channels: 3, Width: 8, Layers: layers, Heads: 2, MLPDim: 16, ClassToken: true, PreNorm: true, Act: nn.ActQuickGELU}
}

func images(n, size int) *kernels.Tensor {
	rng := rand.New(rand.NewPCG(3, 4))
	x := kernels.Zeros(n, 3, size, size)
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	return x
}

// TestPenultimate: the penultimate layer's patches of an L-layer ViT equal
// the last layer's patches of the same weights cut to L-1 layers (the
// layers are created in order from the same seed).
func TestPenultimate(t *testing.T) {
	full, err := New(nn.NewParams(), nn.Rng(9), "vit", cfg(3))
	if err != nil {
		t.Fatal(err)
	}
	cut, _ := New(nn.NewParams(), nn.Rng(9), "vit", cfg(2))
	x := images(2, 8)
	a := full.Forward(nil, x, PenultimatePatches)
	b := cut.Forward(nil, x, LastPatches)
	if len(a.Shape) != 3 || a.Shape[1] != 4 {
		t.Fatalf("PenultimatePatches shape %v, want [2 4 8] (class token dropped)", a.Shape)
	}
	for i := range a.Data {
		if a.Data[i] != b.Data[i] {
			t.Fatalf("penultimate feature %d = %v, 2-layer last = %v", i, a.Data[i], b.Data[i])
		}
	}
	if all := full.Forward(nil, x, LastAll); all.Shape[1] != 5 || full.Tokens(8, LastAll) != 5 || full.Tokens(8, LastPatches) != 4 {
		t.Errorf("LastAll shape %v, Tokens %d/%d; want 5 tokens with the class token", all.Shape, full.Tokens(8, LastAll), full.Tokens(8, LastPatches))
	}
}

// TestHigherResolution: a ViT trained at 8 px (2×2 positions) runs at 16 px
// by bicubic interpolation of its positions, and the position table still
// receives gradients.
func TestHigherResolution(t *testing.T) {
	p := nn.NewParams()
	v, _ := New(p, nn.Rng(2), "vit", cfg(1))
	tp := kernels.NewTape()
	out := v.Forward(tp, images(1, 16), LastPatches)
	if out.Shape[1] != 16 {
		t.Fatalf("16 px output has %d tokens, want 16", out.Shape[1])
	}
	tp.Backward(tp.Sum(tp.Square(out)))
	g := p.Get("vit.embeddings.position_embedding.weight").Grad
	var norm float64
	for _, x := range g[8:] { // the 4 patch rows (row 0 is the class token)
		norm += math.Abs(float64(x))
	}
	if norm == 0 {
		t.Error("no gradient reached the learned positions through the interpolation")
	}
	if ParamCount(cfg(1)) != p.Count() {
		t.Errorf("ParamCount = %d, built %d", ParamCount(cfg(1)), p.Count())
	}
}

// TestPostNormAndHead: the final LayerNorm and SigLIP's pooling head are
// counted by ParamCount, and Encode's outputs have HF's shapes.
func TestPostNormAndHead(t *testing.T) {
	for _, c := range []Config{
		func() Config { c := cfg(2); c.PostNorm = PostNormPooled; return c }(),
		func() Config {
			c := cfg(2)
			c.ClassToken, c.PreNorm, c.PostNorm, c.Head = false, false, PostNormAll, true
			return c
		}(),
		func() Config { c := cfg(2); c.PatchBias, c.PreNorm, c.PostNorm = true, false, PostNormAll; return c }(),
	} {
		p := nn.NewParams()
		v, err := New(p, nn.Rng(4), "vit", c)
		if err != nil {
			t.Fatal(err)
		}
		if ParamCount(c) != p.Count() {
			t.Errorf("%+v: ParamCount = %d, built %d", c, ParamCount(c), p.Count())
		}
		out := v.Encode(nil, images(2, 8), true)
		n := v.Tokens(8, LastAll)
		if len(out.Hidden) != c.Layers+1 || out.Last.Shape[1] != n || out.Pooled == nil || len(out.Pooled.Shape) != 2 || out.Pooled.Shape[1] != c.Width {
			t.Errorf("%+v: Encode gave %d hidden states, last %v, pooled %v", c, len(out.Hidden), out.Last.Shape, out.Pooled)
		}
	}
	c := cfg(1)
	c.ClassToken, c.PostNorm = false, PostNormPooled
	if err := c.Validate(); err == nil {
		t.Error("a pooled post-LayerNorm without a class token validated")
	}
}
