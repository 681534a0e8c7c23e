package vqgan

import (
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
