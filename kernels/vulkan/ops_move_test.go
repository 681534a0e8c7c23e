package vulkan_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/loomtrain/loom/kernels"
)

type tapeFn = func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor

func attn(o kernels.AttnOptions) tapeFn {
	return func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.Attention(in[0], in[1], in[2], o)
	}
}

func rope(cfg kernels.RoPEConfig) tapeFn {
	return func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return tp.RoPE(in[0], cfg) }
}

// The movement ops, RoPE, Dropout, Attention with every mask, the
// convolutions and the bicubic resize, against the CPU as in TestOpsMatchCPU.
var moveCases = []opCase{
	{name: "Permute", shapes: [][]int{{2, 3, 4}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return tp.Permute(x, 2, 0, 1) })},
	{name: "Transpose", shapes: [][]int{{3, 5}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return tp.Transpose(x, 0, 1) })},
	{name: "Concat", shapes: [][]int{{2, 3, 4}, {2, 1, 4}, {2, 2, 4}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.Concat(1, in...)
	}},
	{name: "Concat/self", shapes: [][]int{{3, 2}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return tp.Concat(0, x, x) })},
	{name: "Slice", shapes: [][]int{{4, 6}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return tp.Slice(x, 1, 1, 4) })},
	{name: "Split", shapes: [][]int{{3, 7, 2}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		p := tp.Split(x, 1, 2, 4, 1)
		return tp.Concat(1, p[2], tp.Tanh(p[0]), p[1]) // the pieces in another order, one through an op
	})},
	{name: "IndexSelect/repeats", shapes: [][]int{{2, 5, 3}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		return tp.IndexSelect(x, 1, []int32{4, 0, 4, 2, 4})
	})},
	{name: "Embedding", shapes: [][]int{{10, 8}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		return tp.Embedding(x, []int32{3, 9, 3, 0, 3, 7})
	})},
	{name: "Gather", shapes: [][]int{{3, 5, 2}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		return tp.Gather(x, 1, []int32{0, 4, 1, 1, 2, 3, 4, 4, 0, 0, 3, 2})
	})},
	{name: "SumAxis", shapes: [][]int{{3, 4, 5}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return tp.SumAxis(x, 1) })},
	{name: "MeanAxis", shapes: [][]int{{3, 4, 5}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return tp.MeanAxis(x, -1) })},
	{name: "RoPE", shapes: [][]int{{2, 5, 3, 8}}, f: rope(kernels.RoPEConfig{Theta: 10000, Pos: []int32{0, 1, 2, 3, 4}})},
	{name: "RoPE/packed-partial", shapes: [][]int{{10, 2, 12}}, f: rope(kernels.RoPEConfig{Theta: 1e6, Dims: 8,
		Pos: []int32{0, 1, 2, 0, 1, 2, 3, 0, 1, 9}})},
	{name: "RoPE/2d", shapes: [][]int{{6, 2, 8}}, f: rope(kernels.RoPEConfig{Theta: 100, Rows: []int32{0, 0, 0, 1, 1, 1}, Cols: []int32{0, 1, 2, 0, 1, 2}})},
	{name: "RoPE/invfreq", shapes: [][]int{{4, 1, 6}}, f: rope(kernels.RoPEConfig{InvFreq: []float32{1, 0.1, 0.01}, AttnScale: 1.2, Pos: []int32{0, 5, 50, 500}})},
	{name: "Dropout", shapes: [][]int{{4, 50}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return tp.Dropout(x, 0.3, 99) })},
	{name: "Attention", shapes: [][]int{{2, 5, 2, 8}, {2, 7, 2, 8}, {2, 7, 2, 8}}, f: attn(kernels.AttnOptions{}), tol: 5e-5},
	{name: "Attention/causal", shapes: [][]int{{2, 6, 3, 4}, {2, 6, 3, 4}, {2, 6, 3, 4}}, f: attn(kernels.AttnOptions{Causal: true}), tol: 5e-5},
	{name: "Attention/prefix", shapes: [][]int{{1, 7, 2, 4}, {1, 7, 2, 4}, {1, 7, 2, 4}}, f: attn(kernels.AttnOptions{Causal: true, Prefix: 3}), tol: 5e-5},
	{name: "Attention/padding", shapes: [][]int{{3, 4, 1, 8}, {3, 6, 1, 8}, {3, 6, 1, 8}}, f: attn(kernels.AttnOptions{KeyLens: []int{6, 2, 0}, Scale: 0.3}), tol: 5e-5},
	{name: "Attention/segments", shapes: [][]int{{2, 6, 2, 4}, {2, 6, 2, 4}, {2, 6, 2, 4}}, f: attn(kernels.AttnOptions{Mask: &kernels.AttnMask{
		Causal: true,
		QPos:   []int32{0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 2, 3}, KPos: []int32{0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 2, 3},
		QSeg: []int32{0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1}, KSeg: []int32{0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1}}}), tol: 5e-5},
	{name: "Conv2D", shapes: [][]int{{2, 3, 6, 6}, {4, 3, 3, 3}, {4}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.Conv2D(in[0], in[1], in[2], 2, 1)
	}, tol: 5e-5},
	{name: "PatchEmbed", shapes: [][]int{{2, 3, 8, 8}, {5, 3, 4, 4}, {5}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.PatchEmbed(in[0], in[1], in[2])
	}, tol: 5e-5},
	{name: "InterpolateBicubic", shapes: [][]int{{2, 3, 4, 4}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		return tp.InterpolateBicubic(x, 6, 5)
	}), tol: 5e-5},
	{name: "VectorQuantize", shapes: [][]int{{2, 5, 4}, {9, 4}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		r := tp.VectorQuantize(in[0], in[1], 0.25)
		return tp.Concat(0, tp.Reshape(r.Out, -1), r.Loss, r.CodebookLoss, r.Commitment)
	}},
}

func init() { cases = append(cases, moveCases...) }

// TestNearestCodeIndices checks the device's VQ indices against the CPU's
// on more rows than the op case.
func TestNearestCodeIndices(t *testing.T) {
	gpu := gpuOrSkip(t)
	rng := rand.New(rand.NewPCG(5, 5))
	z, cb := randTensor(rng, 300, 16), randTensor(rng, 64, 16)
	want := kernels.NewTape().VectorQuantize(z, cb, 0.25).Indices
	got := kernels.NewTape().VectorQuantize(z.To(gpu), cb.To(gpu), 0.25).Indices
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("indices\n%v\nCPU\n%v", got, want)
	}
}
