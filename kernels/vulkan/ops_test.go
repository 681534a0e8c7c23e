package vulkan_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/kernels/internal/vk"
	_ "github.com/loomtrain/loom/kernels/vulkan"
)

// gpuOrSkip opens the Vulkan device, or skips when this machine has no
// Vulkan loader or device. CI installs Mesa's lavapipe (.ci/run), so the
// tests run there.
func gpuOrSkip(t testing.TB) kernels.Device {
	t.Helper()
	d, err := kernels.OpenDevice("vulkan")
	if errors.Is(err, vk.ErrNoLoader) || errors.Is(err, vk.ErrNoDevice) {
		t.Skipf("no Vulkan device (install mesa-vulkan-drivers for lavapipe): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func randTensor(rng *rand.Rand, shape ...int) *kernels.Tensor {
	t := kernels.Zeros(shape...)
	t.InitNormal(rng, 1)
	t.SetRequiresGrad(true)
	return t
}

// closeTo reports the first index where got and want differ by more than
// atol + rtol·|want|.
func closeTo(got, want []float32, atol, rtol float64) (int, bool) {
	if len(got) != len(want) {
		return -1, false
	}
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(float64(got[i])) != math.IsNaN(float64(want[i])) || d > atol+rtol*math.Abs(float64(want[i])) {
			return i, false
		}
	}
	return 0, true
}

type opCase struct {
	name   string
	shapes [][]int
	f      func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor
	tol    float64 // absolute and relative; 0 means 2e-5
}

func mm(ta, tb bool) func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
	return func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return tp.MatmulT(in[0], in[1], ta, tb) }
}

func unary(f func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor) func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
	return func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return f(tp, in[0]) }
}

var cases = []opCase{
	{name: "Matmul", shapes: [][]int{{7, 5}, {5, 9}}, f: mm(false, false)},
	{name: "Matmul/tiles", shapes: [][]int{{130, 70}, {70, 129}}, f: mm(false, false), tol: 5e-5},
	{name: "Matmul/batched", shapes: [][]int{{2, 3, 5, 7}, {2, 3, 7, 4}}, f: mm(false, false)},
	{name: "Matmul/shared-weight", shapes: [][]int{{6, 8, 5}, {5, 3}}, f: mm(false, false)},
	{name: "Matmul/shared-left", shapes: [][]int{{8, 5}, {3, 5, 4}}, f: mm(false, false)},
	{name: "MatmulT/tA", shapes: [][]int{{4, 7, 5}, {4, 7, 6}}, f: mm(true, false)},
	{name: "MatmulT/tB", shapes: [][]int{{5, 7}, {6, 7}}, f: mm(false, true)},
	{name: "MatmulT/tAtB", shapes: [][]int{{3, 7, 5}, {3, 6, 7}}, f: mm(true, true)},
	{name: "MatmulT/tA-shared", shapes: [][]int{{2, 7, 5}, {7, 6}}, f: mm(true, false)},
	{name: "Linear", shapes: [][]int{{3, 5, 16}, {24, 16}, {24}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.Linear(in[0], in[1], in[2])
	}},
	{name: "Linear/nobias", shapes: [][]int{{9, 33}, {70, 33}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.Linear(in[0], in[1], nil)
	}},
	{name: "Add", shapes: [][]int{{4, 5, 6}, {4, 5, 6}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return tp.Add(in[0], in[1]) }},
	{name: "Add/bias", shapes: [][]int{{4, 5, 6}, {6}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return tp.Add(in[0], in[1]) }},
	{name: "Sub/scalar", shapes: [][]int{{3, 4}, {1}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return tp.Sub(in[0], in[1]) }},
	{name: "Mul/both-broadcast", shapes: [][]int{{4, 1, 6}, {5, 1}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return tp.Mul(in[0], in[1]) }},
	{name: "Mul/self", shapes: [][]int{{3, 7}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return tp.Mul(in[0], in[0]) }},
	{name: "Div", shapes: [][]int{{2, 3, 4}, {3, 1}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.Div(in[0], tp.AddScalar(tp.Square(in[1]), 1))
	}},
	{name: "Scale", shapes: [][]int{{5, 3}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return tp.Scale(x, -1.5) })},
	{name: "GELU", shapes: [][]int{{1000}}, f: unary((*kernels.Tape).GELU)},
	{name: "GELUErf", shapes: [][]int{{1000}}, f: unary((*kernels.Tape).GELUErf), tol: 1e-5},
	{name: "SiLU", shapes: [][]int{{1000}}, f: unary((*kernels.Tape).SiLU)},
	{name: "ReLU", shapes: [][]int{{1000}}, f: unary((*kernels.Tape).ReLU)},
	{name: "Tanh", shapes: [][]int{{1000}}, f: unary((*kernels.Tape).Tanh)},
	{name: "Sigmoid", shapes: [][]int{{1000}}, f: unary((*kernels.Tape).Sigmoid)},
	{name: "Exp", shapes: [][]int{{1000}}, f: unary((*kernels.Tape).Exp)},
	{name: "Square", shapes: [][]int{{1000}}, f: unary((*kernels.Tape).Square)},
	{name: "SwiGLU", shapes: [][]int{{7, 300}, {7, 300}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor { return tp.SwiGLU(in[0], in[1]) }},
	{name: "Softmax", shapes: [][]int{{5, 37}}, f: unary((*kernels.Tape).Softmax)},
	{name: "Softmax/long", shapes: [][]int{{3, 1000}}, f: unary((*kernels.Tape).Softmax)},
	{name: "LogSoftmax", shapes: [][]int{{6, 300}}, f: unary((*kernels.Tape).LogSoftmax)},
	{name: "LayerNorm", shapes: [][]int{{2, 5, 48}, {48}, {48}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.LayerNorm(in[0], in[1], in[2], 1e-5)
	}, tol: 5e-5},
	{name: "LayerNorm/plain", shapes: [][]int{{9, 300}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.LayerNorm(in[0], nil, nil, 1e-5)
	}, tol: 5e-5},
	{name: "RMSNorm", shapes: [][]int{{7, 40}, {40}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.RMSNorm(in[0], in[1], 1e-6)
	}, tol: 5e-5},
	{name: "RMSNorm/plain", shapes: [][]int{{4, 129}}, f: func(tp *kernels.Tape, in []*kernels.Tensor) *kernels.Tensor {
		return tp.RMSNorm(in[0], nil, 1e-6)
	}, tol: 5e-5},
	{name: "Sum", shapes: [][]int{{3, 333}}, f: unary((*kernels.Tape).Sum), tol: 1e-4},
	{name: "Mean", shapes: [][]int{{3, 333}}, f: unary((*kernels.Tape).Mean)},
	{name: "Reshape", shapes: [][]int{{4, 6}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		r := tp.Reshape(x, 2, -1)
		return tp.Add(tp.Reshape(tp.Tanh(r), 3, 8), tp.Reshape(x, 3, 8)) // two consumers of x's gradient
	})},
	{name: "CrossEntropy", shapes: [][]int{{6, 11}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		return tp.CrossEntropy(x, []int32{3, 0, 10, 5, 5, 2}, kernels.CEOptions{})
	})},
	{name: "CrossEntropy/options", shapes: [][]int{{2, 3, 11}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		return tp.CrossEntropy(x, []int32{3, -100, 10, 5, -100, 2}, kernels.CEOptions{
			IgnoreIndex: -100, HasIgnore: true, LabelSmoothing: 0.1, Weights: []float32{1, 2, 0.5, 1, 1, 3}})
	})},
	{name: "CrossEntropy/sum", shapes: [][]int{{4, 7}}, f: unary(func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		return tp.CrossEntropy(x, []int32{1, 2, 3, 4}, kernels.CEOptions{Sum: true})
	})},
}

// TestOpsMatchCPU runs every case's forward on the host and on the
// device, then a backward pass from the same random upstream gradient,
// and compares the outputs and every input's gradient.
func TestOpsMatchCPU(t *testing.T) {
	gpu := gpuOrSkip(t)
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(ci), 7))
			var host, dev []*kernels.Tensor
			for _, s := range c.shapes {
				h := randTensor(rng, s...)
				host = append(host, h)
				dev = append(dev, h.To(gpu))
			}
			tol := c.tol
			if tol == 0 {
				tol = 2e-5
			}
			tpH, tpD := kernels.NewTape(), kernels.NewTape()
			outH, outD := c.f(tpH, host), c.f(tpD, dev)
			if !outD.OnDevice() {
				t.Fatalf("output on %v, want the device", outD.Device())
			}
			if fmt.Sprint(outH.Shape) != fmt.Sprint(outD.Shape) {
				t.Fatalf("shape %v, CPU %v", outD.Shape, outH.Shape)
			}
			got := outD.HostData()
			if i, ok := closeTo(got, outH.Data, tol, tol); !ok {
				t.Fatalf("forward: [%d] = %v, CPU %v", i, at(got, i), at(outH.Data, i))
			}
			g := make([]float32, outH.Size())
			for i := range g {
				g[i] = float32(rng.NormFloat64())
			}
			tpH.BackwardFrom(outH, g)
			tpD.BackwardFrom(outD, g)
			for i := range host {
				want, got := host[i].Grad, dev[i].HostGrad()
				if j, ok := closeTo(got, want, tol, tol); !ok {
					t.Fatalf("gradient of input %d %v: [%d] = %v, CPU %v", i, host[i].Shape, j, at(got, j), at(want, j))
				}
			}
		})
	}
}

func at(x []float32, i int) any {
	if i < 0 || i >= len(x) {
		return fmt.Sprintf("(len %d)", len(x))
	}
	return x[i]
}

// TestSGEMMShapes checks the exported-shape GEMM paths (odd sizes around
// the 64×64 tile, k = 0 and 1) against the host.
func TestSGEMMShapes(t *testing.T) {
	gpu := gpuOrSkip(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range [][3]int{{1, 1, 1}, {1, 65, 3}, {63, 64, 65}, {65, 1, 128}, {100, 100, 1}, {3, 5, 0}, {200, 37, 300}} {
		a, b := randTensor(rng, s[0], s[2]), randTensor(rng, s[2], s[1])
		want := kernels.NewTape().Matmul(a, b).Data
		got := kernels.NewTape().Matmul(a.To(gpu), b.To(gpu)).HostData()
		if i, ok := closeTo(got, want, 1e-4, 1e-4); !ok {
			t.Errorf("m,n,k=%v: [%d] = %v, CPU %v", s, i, at(got, i), at(want, i))
		}
	}
}

func TestDeviceErrors(t *testing.T) {
	gpu := gpuOrSkip(t)
	a := kernels.New([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	b := a.To(gpu)
	// A host constant (no gradient wanted) meets a device tensor: it is
	// uploaded for the op.
	if s := kernels.NewTape().Add(a, b); !s.OnDevice() || fmt.Sprint(s.HostData()) != "[2 4 6 8 10 12]" {
		t.Fatalf("host constant + device tensor: %v on %v", s.HostData(), s.Device())
	}
	// A host tensor that wants a gradient cannot be mixed in.
	hp := kernels.NewParam("hp", 2, 3)
	var de *kernels.DeviceError
	err := catchAny(func() { kernels.NewTape().Add(hp, b) })
	if !errors.As(err, &de) || de.Op != "Add" {
		t.Fatalf("host parameter + device Add: %v, want a *DeviceError naming Add", err)
	}
	t.Log(err)
	err = catchAny(func() { kernels.NewTape().Concat(0, b, hp) })
	if !errors.As(err, &de) || de.Op != "Concat" {
		t.Fatalf("Concat of a device and a host tensor: %v, want a *DeviceError naming Concat", err)
	}
	t.Log(err)
	// MoveTo moves a parameter in place.
	mp := kernels.NewParam("mp", 2, 3)
	mp.Data[4] = 7
	mp.MoveTo(gpu)
	if !mp.OnDevice() || !mp.RequiresGrad() || mp.HostData()[4] != 7 {
		t.Fatalf("MoveTo(gpu): on device %v, data %v", mp.OnDevice(), mp.HostData())
	}
	if mp.MoveTo(kernels.Host); mp.OnDevice() || mp.Data[4] != 7 {
		t.Fatalf("MoveTo(Host): %v", mp.Data)
	}
	if b.Device() != gpu || a.Device() != kernels.Host || b.To(kernels.Host).Device() != kernels.Host {
		t.Error("Device() does not report where the tensors are")
	}
	if gpu.String() == "host" || gpu.Sync() != nil {
		t.Errorf("device %v", gpu)
	}
	for _, l := range kernels.ListDevices() {
		t.Log(l)
	}
}

func catchAny(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err, _ = r.(error)
			if err == nil {
				err = fmt.Errorf("%v", r)
			}
		}
	}()
	f()
	return nil
}

func TestTransfers(t *testing.T) {
	gpu := gpuOrSkip(t)
	p := kernels.NewParam("w", 3, 4)
	for i := range p.Data {
		p.Data[i] = float32(i)
	}
	p.Grad = make([]float32, 12)
	p.Grad[5] = 2
	d := p.To(gpu)
	if !d.RequiresGrad() || d.Name != "w" || d.Size() != 12 || d.Data != nil {
		t.Fatalf("To(gpu): %v requiresGrad=%v size=%d", d, d.RequiresGrad(), d.Size())
	}
	back := d.To(kernels.Host)
	if fmt.Sprint(back.Data) != fmt.Sprint(p.Data) || back.Grad[5] != 2 {
		t.Fatalf("round trip: %v grad %v", back.Data, back.Grad)
	}
	c := d.Clone()
	d.ZeroGrad()
	if fmt.Sprint(c.HostData()) != fmt.Sprint(p.Data) || d.HostGrad()[5] != 0 {
		t.Fatal("Clone or ZeroGrad on the device")
	}
	if v := kernels.Scalar(3.5).To(gpu).Item(); v != 3.5 {
		t.Fatalf("Item = %v", v)
	}
}
