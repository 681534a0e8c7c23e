package vqgan

import (
	"slices"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
)

func TestShapesAndCount(t *testing.T) {
	c := Config{ImageSize: 16, Channels: 3, Base: 4, Mult: []int{1, 2, 2}, NumRes: 1, Groups: 2, CodeDim: 4, Codebook: 8}
	p := nn.NewParams()
	v, err := New(p, nn.Rng(1), "vqgan", c)
	if err != nil {
		t.Fatal(err)
	}
	if ParamCount(c) != p.Count() {
		t.Errorf("ParamCount = %d, built %d", ParamCount(c), p.Count())
	}
	x := kernels.Zeros(2, 3, 16, 16)
	for i := range x.Data {
		x.Data[i] = float32(i%7)/7 - 0.5
	}
	codes := v.Tokenize(x)
	if len(codes) != 2 || len(codes[0]) != 16 { // 16 px / 4 = 4×4 codes
		t.Fatalf("Tokenize gave %d rows of %d codes, want 2 of 16", len(codes), len(codes[0]))
	}
	for _, c0 := range codes[0] {
		if c0 < 0 || c0 >= 8 {
			t.Fatalf("code %d outside the codebook", c0)
		}
	}
	img := v.DecodeCodes(nil, append(codes[0], codes[1]...), 2, 4, 4)
	if len(img.Shape) != 4 || img.Shape[2] != 16 || img.Shape[3] != 16 {
		t.Errorf("DecodeCodes shape %v, want [2 3 16 16]", img.Shape)
	}
	if err := (Config{ImageSize: 10, Channels: 3, Base: 4, Mult: []int{1, 2, 2}, NumRes: 1, Groups: 2, CodeDim: 4, Codebook: 8}).Validate(); err == nil {
		t.Error("Validate accepted 10 px with 4× downsampling")
	}
	if err := (Config{ImageSize: 8, Channels: 3, Base: 3, Mult: []int{1, 2}, NumRes: 1, Groups: 2, CodeDim: 4, Codebook: 8}).Validate(); err == nil {
		t.Error("Validate accepted width 3 with 2 groups")
	}
}

// TestLWMLayout: with z_channels ≠ code dim the count still matches the
// built tree, LWM's size has the 146,244,675 parameters of its Flax tree
// (the full-size key list of models/hf/testdata/gen_vqgan.py's port of
// lwm/vqgan.py), and Decode clips to [-1, 1].
func TestLWMLayout(t *testing.T) {
	lwm := Config{ImageSize: 256, Channels: 3, Base: 128, Mult: []int{1, 2, 2, 4, 6}, NumRes: 2, Groups: 32, CodeDim: 64, Codebook: 8192}
	if got := ParamCount(lwm); got != 146_244_675 {
		t.Errorf("ParamCount(LWM) = %d, want 146244675", got)
	}
	c := Config{ImageSize: 8, Channels: 3, Base: 4, Mult: []int{1, 2}, NumRes: 1, Groups: 2, CodeDim: 3, Codebook: 8, ZChannels: 5}
	p := nn.NewParams()
	v, err := New(p, nn.Rng(3), "vqgan", c)
	if err != nil {
		t.Fatal(err)
	}
	if ParamCount(c) != p.Count() {
		t.Errorf("ParamCount = %d, built %d", ParamCount(c), p.Count())
	}
	for _, n := range []string{"vqgan.quant_conv.weight", "vqgan.post_quant_conv.weight", "vqgan.decoder.up.0.block.1.conv2.weight"} {
		if p.Get(n) == nil {
			t.Errorf("no parameter %s", n)
		}
	}
	if s := p.Get("vqgan.quant_conv.weight").Shape; s[0] != 3 || s[1] != 5 {
		t.Errorf("quant_conv %v, want [3 5 1 1]", s)
	}
	for i := range p.Get("vqgan.decoder.conv_out.weight").Data {
		p.Get("vqgan.decoder.conv_out.weight").Data[i] *= 50 // push pixels past ±1
	}
	img := v.DecodeCodes(nil, []int32{0, 1, 2, 3, 4, 5, 6, 7}, 2, 2, 2)
	out := 0
	for _, x := range img.Data {
		if x < -1 || x > 1 {
			t.Fatalf("Decode gave %v outside [-1, 1]", x)
		}
		if x == 1 || x == -1 {
			out++
		}
	}
	if out == 0 {
		t.Error("no pixel reached the clip; the test does not exercise it")
	}
}

// TestDownsamplePadsBottomRight: LWM's Downsample output pixel (i, j) sees
// input pixels 2i..2i+2, 2j..2j+2, the last row/column being zero padding.
func TestDownsamplePadsBottomRight(t *testing.T) {
	p := nn.NewParams()
	c := newConv(p, nn.Rng(1), "d", 1, 1, 3, 2)
	clear(c.w.Data)
	c.w.Data[0] = 1 // top-left tap: picks x[2i, 2j]
	c.w.Data[8] = 1 // bottom-right tap: x[2i+2, 2j+2], zero past the edge
	x := kernels.Zeros(1, 1, 4, 4)
	for i := range x.Data {
		x.Data[i] = float32(i + 1)
	}
	y := c.forward(nil, x)
	want := []float32{1 + 11, 3 + 0, 9 + 0, 11 + 0}
	if len(y.Data) != 4 || !slices.Equal(y.Data, want) {
		t.Errorf("downsample = %v, want %v", y.Data, want)
	}
}
