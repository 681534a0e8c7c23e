package vulkan

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/loomtrain/loom/kernels"
)

// A Check is one op (or a short composition) run on the host and on the
// device from the same random inputs and upstream gradient; the outputs
// and every input's gradient must agree within Tol (absolute and
// relative; 0 means 2e-5). The suite is Checks: the tests run it, and so
// does `loom bench device` on a real GPU.
type Check struct {
	Name   string
	Shapes [][]int
	F      func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor
	Tol    float64
}

func mm(ta, tb bool) func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
	return func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return tp.MatmulT(in[0], in[1], ta, tb) }
}

func unary(f func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor) func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
	return func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return f(tp, in[0]) }
}

var cases = []Check{
	{Name: "Matmul", Shapes: [][]int{{7, 5}, {5, 9}}, F: mm(false, false)},
	{Name: "Matmul/tiles", Shapes: [][]int{{130, 70}, {70, 129}}, F: mm(false, false), Tol: 5e-5},
	{Name: "Matmul/batched", Shapes: [][]int{{2, 3, 5, 7}, {2, 3, 7, 4}}, F: mm(false, false)},
	{Name: "Matmul/shared-weight", Shapes: [][]int{{6, 8, 5}, {5, 3}}, F: mm(false, false)},
	{Name: "Matmul/shared-left", Shapes: [][]int{{8, 5}, {3, 5, 4}}, F: mm(false, false)},
	{Name: "MatmulT/tA", Shapes: [][]int{{4, 7, 5}, {4, 7, 6}}, F: mm(true, false)},
	{Name: "MatmulT/tB", Shapes: [][]int{{5, 7}, {6, 7}}, F: mm(false, true)},
	{Name: "MatmulT/tAtB", Shapes: [][]int{{3, 7, 5}, {3, 6, 7}}, F: mm(true, true)},
	{Name: "MatmulT/tA-shared", Shapes: [][]int{{2, 7, 5}, {7, 6}}, F: mm(true, false)},
	{Name: "Linear", Shapes: [][]int{{3, 5, 16}, {24, 16}, {24}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.Linear(in[0], in[1], in[2])
	}},
	{Name: "Linear/nobias", Shapes: [][]int{{9, 33}, {70, 33}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.Linear(in[0], in[1], nil)
	}},
	{Name: "Add", Shapes: [][]int{{4, 5, 6}, {4, 5, 6}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return tp.Add(in[0], in[1]) }},
	{Name: "Add/bias", Shapes: [][]int{{4, 5, 6}, {6}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return tp.Add(in[0], in[1]) }},
	{Name: "Sub/scalar", Shapes: [][]int{{3, 4}, {1}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return tp.Sub(in[0], in[1]) }},
	{Name: "Mul/both-broadcast", Shapes: [][]int{{4, 1, 6}, {5, 1}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return tp.Mul(in[0], in[1]) }},
	{Name: "Mul/self", Shapes: [][]int{{3, 7}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return tp.Mul(in[0], in[0]) }},
	{Name: "Div", Shapes: [][]int{{2, 3, 4}, {3, 1}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.Div(in[0], tp.AddScalar(tp.Square(in[1]), 1))
	}},
	{Name: "Scale", Shapes: [][]int{{5, 3}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return tp.Scale(x, -1.5) })},
	{Name: "GELU", Shapes: [][]int{{1000}}, F: unary((*kernels.Tape).GELU)},
	{Name: "GELUErf", Shapes: [][]int{{1000}}, F: unary((*kernels.Tape).GELUErf), Tol: 1e-5},
	{Name: "SiLU", Shapes: [][]int{{1000}}, F: unary((*kernels.Tape).SiLU)},
	{Name: "ReLU", Shapes: [][]int{{1000}}, F: unary((*kernels.Tape).ReLU)},
	{Name: "Tanh", Shapes: [][]int{{1000}}, F: unary((*kernels.Tape).Tanh)},
	{Name: "Sigmoid", Shapes: [][]int{{1000}}, F: unary((*kernels.Tape).Sigmoid)},
	{Name: "Exp", Shapes: [][]int{{1000}}, F: unary((*kernels.Tape).Exp)},
	{Name: "Square", Shapes: [][]int{{1000}}, F: unary((*kernels.Tape).Square)},
	{Name: "SwiGLU", Shapes: [][]int{{7, 300}, {7, 300}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return tp.SwiGLU(in[0], in[1]) }},
	{Name: "Softmax", Shapes: [][]int{{5, 37}}, F: unary((*kernels.Tape).Softmax)},
	{Name: "Softmax/long", Shapes: [][]int{{3, 1000}}, F: unary((*kernels.Tape).Softmax)},
	{Name: "LogSoftmax", Shapes: [][]int{{6, 300}}, F: unary((*kernels.Tape).LogSoftmax)},
	{Name: "LayerNorm", Shapes: [][]int{{2, 5, 48}, {48}, {48}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.LayerNorm(in[0], in[1], in[2], 1e-5)
	}, Tol: 5e-5},
	{Name: "LayerNorm/plain", Shapes: [][]int{{9, 300}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.LayerNorm(in[0], nil, nil, 1e-5)
	}, Tol: 5e-5},
	{Name: "RMSNorm", Shapes: [][]int{{7, 40}, {40}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.RMSNorm(in[0], in[1], 1e-6)
	}, Tol: 5e-5},
	{Name: "RMSNorm/plain", Shapes: [][]int{{4, 129}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.RMSNorm(in[0], nil, 1e-6)
	}, Tol: 5e-5},
	{Name: "Sum", Shapes: [][]int{{3, 333}}, F: unary((*kernels.Tape).Sum), Tol: 1e-4},
	{Name: "Mean", Shapes: [][]int{{3, 333}}, F: unary((*kernels.Tape).Mean)},
	{Name: "Reshape", Shapes: [][]int{{4, 6}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		r := tp.Reshape(x, 2, -1)
		return tp.Add(tp.Reshape(tp.Tanh(r), 3, 8), tp.Reshape(x, 3, 8)) // two consumers of x's gradient
	})},
	{Name: "CrossEntropy", Shapes: [][]int{{6, 11}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		return tp.CrossEntropy(x, []int32{3, 0, 10, 5, 5, 2}, kernels.CEOptions{})
	})},
	{Name: "CrossEntropy/options", Shapes: [][]int{{2, 3, 11}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		return tp.CrossEntropy(x, []int32{3, -100, 10, 5, -100, 2}, kernels.CEOptions{
			IgnoreIndex: -100, HasIgnore: true, LabelSmoothing: 0.1, Weights: []float32{1, 2, 0.5, 1, 1, 3}})
	})},
	{Name: "CrossEntropy/sum", Shapes: [][]int{{4, 7}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		return tp.CrossEntropy(x, []int32{1, 2, 3, 4}, kernels.CEOptions{Sum: true})
	})},
}

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
var moveCases = []Check{
	{Name: "Permute", Shapes: [][]int{{2, 3, 4}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return tp.Permute(x, 2, 0, 1) })},
	{Name: "Transpose", Shapes: [][]int{{3, 5}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return tp.Transpose(x, 0, 1) })},
	{Name: "Concat", Shapes: [][]int{{2, 3, 4}, {2, 1, 4}, {2, 2, 4}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.Concat(1, in...)
	}},
	{Name: "Concat/self", Shapes: [][]int{{3, 2}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return tp.Concat(0, x, x) })},
	{Name: "Slice", Shapes: [][]int{{4, 6}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return tp.Slice(x, 1, 1, 4) })},
	{Name: "Split", Shapes: [][]int{{3, 7, 2}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		p := tp.Split(x, 1, 2, 4, 1)
		return tp.Concat(1, p[2], tp.Tanh(p[0]), p[1]) // the pieces in another order, one through an op
	})},
	{Name: "IndexSelect/repeats", Shapes: [][]int{{2, 5, 3}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		return tp.IndexSelect(x, 1, []int32{4, 0, 4, 2, 4})
	})},
	{Name: "Embedding", Shapes: [][]int{{10, 8}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		return tp.Embedding(x, []int32{3, 9, 3, 0, 3, 7})
	})},
	{Name: "Gather", Shapes: [][]int{{3, 5, 2}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		return tp.Gather(x, 1, []int32{0, 4, 1, 1, 2, 3, 4, 4, 0, 0, 3, 2})
	})},
	{Name: "SumAxis", Shapes: [][]int{{3, 4, 5}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return tp.SumAxis(x, 1) })},
	{Name: "MeanAxis", Shapes: [][]int{{3, 4, 5}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return tp.MeanAxis(x, -1) })},
	{Name: "RoPE", Shapes: [][]int{{2, 5, 3, 8}}, F: rope(kernels.RoPEConfig{Theta: 10000, Pos: []int32{0, 1, 2, 3, 4}})},
	{Name: "RoPE/packed-partial", Shapes: [][]int{{10, 2, 12}}, F: rope(kernels.RoPEConfig{Theta: 1e6, Dims: 8,
		Pos: []int32{0, 1, 2, 0, 1, 2, 3, 0, 1, 9}})},
	{Name: "RoPE/2d", Shapes: [][]int{{6, 2, 8}}, F: rope(kernels.RoPEConfig{Theta: 100, Rows: []int32{0, 0, 0, 1, 1, 1}, Cols: []int32{0, 1, 2, 0, 1, 2}})},
	{Name: "RoPE/invfreq", Shapes: [][]int{{4, 1, 6}}, F: rope(kernels.RoPEConfig{InvFreq: []float32{1, 0.1, 0.01}, AttnScale: 1.2, Pos: []int32{0, 5, 50, 500}})},
	{Name: "Dropout", Shapes: [][]int{{4, 50}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return tp.Dropout(x, 0.3, 99) })},
	{Name: "Attention", Shapes: [][]int{{2, 5, 2, 8}, {2, 7, 2, 8}, {2, 7, 2, 8}}, F: attn(kernels.AttnOptions{}), Tol: 5e-5},
	{Name: "Attention/causal", Shapes: [][]int{{2, 6, 3, 4}, {2, 6, 3, 4}, {2, 6, 3, 4}}, F: attn(kernels.AttnOptions{Causal: true}), Tol: 5e-5},
	{Name: "Attention/prefix", Shapes: [][]int{{1, 7, 2, 4}, {1, 7, 2, 4}, {1, 7, 2, 4}}, F: attn(kernels.AttnOptions{Causal: true, Prefix: 3}), Tol: 5e-5},
	{Name: "Attention/padding", Shapes: [][]int{{3, 4, 1, 8}, {3, 6, 1, 8}, {3, 6, 1, 8}}, F: attn(kernels.AttnOptions{KeyLens: []int{6, 2, 0}, Scale: 0.3}), Tol: 5e-5},
	{Name: "Attention/segments", Shapes: [][]int{{2, 6, 2, 4}, {2, 6, 2, 4}, {2, 6, 2, 4}}, F: attn(kernels.AttnOptions{Mask: &kernels.AttnMask{
		Causal: true,
		QPos:   []int32{0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 2, 3}, KPos: []int32{0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 2, 3},
		QSeg: []int32{0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1}, KSeg: []int32{0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1}}}), Tol: 5e-5},
	{Name: "Conv2D", Shapes: [][]int{{2, 3, 6, 6}, {4, 3, 3, 3}, {4}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.Conv2D(in[0], in[1], in[2], 2, 1)
	}, Tol: 5e-5},
	{Name: "PatchEmbed", Shapes: [][]int{{2, 3, 8, 8}, {5, 3, 4, 4}, {5}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.PatchEmbed(in[0], in[1], in[2])
	}, Tol: 5e-5},
	{Name: "InterpolateBicubic", Shapes: [][]int{{2, 3, 4, 4}}, F: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		return tp.InterpolateBicubic(x, 6, 5)
	}), Tol: 5e-5},
	{Name: "VectorQuantize", Shapes: [][]int{{2, 5, 4}, {9, 4}}, F: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		r := tp.VectorQuantize(in[0], in[1], 0.25)
		return tp.Concat(0, tp.Reshape(r.Out, -1), r.Loss, r.CodebookLoss, r.Commitment)
	}},
}

// Checks returns the op suite (every op the models use, forward and
// backward, with every mask and layout the models reach).
func Checks() []Check { return append(append([]Check(nil), cases...), moveCases...) }

// RunCheck runs c on the host and on dev from inputs drawn with seed, and
// returns the largest difference it found relative to the tolerance
// (max |device − host| / (tol·(1 + |host|)); ≤ 1 passes) and an error
// naming the first value out of tolerance: the output, or which input's
// gradient. A panic of the device backend is returned as an error.
func RunCheck(dev kernels.Device, seed uint64, c Check) (worst float64, err error) {
	if perr := kernels.Catch(func() { worst, err = runCheck(dev, seed, c) }); perr != nil {
		return worst, perr
	}
	return worst, err
}

func runCheck(dev kernels.Device, seed uint64, c Check) (float64, error) {
	rng := rand.New(rand.NewPCG(seed, 7))
	var host, on []*kernels.Tensor
	for _, s := range c.Shapes {
		h := kernels.Zeros(s...)
		h.InitNormal(rng, 1)
		h.SetRequiresGrad(true)
		host = append(host, h)
		on = append(on, h.To(dev))
	}
	tol := c.Tol
	if tol == 0 {
		tol = 2e-5
	}
	tpH, tpD := kernels.NewTape(), kernels.NewTape()
	outH, outD := c.F(tpH, host), c.F(tpD, on)
	if !outD.OnDevice() {
		return 0, fmt.Errorf("%s: output on %v, want the device", c.Name, outD.Device())
	}
	if fmt.Sprint(outH.Shape) != fmt.Sprint(outD.Shape) {
		return 0, fmt.Errorf("%s: shape %v, CPU %v", c.Name, outD.Shape, outH.Shape)
	}
	worst := 0.0
	cmp := func(what string, got, want []float32) error {
		if len(got) != len(want) {
			return fmt.Errorf("%s: %s has %d values, CPU %d", c.Name, what, len(got), len(want))
		}
		for i := range want {
			g, w := float64(got[i]), float64(want[i])
			if math.IsNaN(g) != math.IsNaN(w) {
				return fmt.Errorf("%s: %s[%d] = %v, CPU %v", c.Name, what, i, got[i], want[i])
			}
			if math.IsNaN(w) {
				continue
			}
			r := math.Abs(g-w) / (tol * (1 + math.Abs(w)))
			worst = max(worst, r)
			if r > 1 {
				return fmt.Errorf("%s: %s[%d] = %v, CPU %v", c.Name, what, i, got[i], want[i])
			}
		}
		return nil
	}
	if err := cmp("forward", outD.HostData(), outH.Data); err != nil {
		return worst, err
	}
	g := make([]float32, outH.Size())
	for i := range g {
		g[i] = float32(rng.NormFloat64())
	}
	tpH.BackwardFrom(outH, g)
	tpD.BackwardFrom(outD, g)
	for i := range host {
		if err := cmp(fmt.Sprintf("gradient of input %d %v", i, host[i].Shape), on[i].HostGrad(), host[i].Grad); err != nil {
			return worst, err
		}
	}
	return worst, nil
}
