package vulkan_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/kernels/vulkan"
)

// stepModel is a small pre-norm residual network over token features, the
// ops a transformer block uses apart from attention: LayerNorm, a GELU MLP,
// RMSNorm, a SwiGLU MLP, residual adds, an LM head and cross-entropy with
// ignored and weighted rows.
type stepModel struct {
	lnW, lnB, fc1, fc1b, fc2, fc2b, rmsW, gate, up, down, head *kernels.Tensor
}

func newStepModel(rng *rand.Rand, c, v int) *stepModel {
	p := func(name string, shape ...int) *kernels.Tensor {
		t := kernels.NewParam(name, shape...)
		if len(shape) == 2 {
			t.InitXavier(rng)
		} else {
			t.InitNormal(rng, 0.1)
		}
		return t
	}
	m := &stepModel{lnW: p("ln.w", c), lnB: p("ln.b", c), fc1: p("fc1", 4*c, c), fc1b: p("fc1.b", 4*c), fc2: p("fc2", c, 4*c), fc2b: p("fc2.b", c),
		rmsW: p("rms.w", c), gate: p("gate", 2*c, c), up: p("up", 2*c, c), down: p("down", c, 2*c), head: p("head", v, c)}
	for i := range m.lnW.Data {
		m.lnW.Data[i] += 1
		m.rmsW.Data[i] += 1
	}
	return m
}

func (m *stepModel) params() []*kernels.Tensor {
	return []*kernels.Tensor{m.lnW, m.lnB, m.fc1, m.fc1b, m.fc2, m.fc2b, m.rmsW, m.gate, m.up, m.down, m.head}
}

func (m *stepModel) to(d kernels.Device) *stepModel {
	ps := m.params()
	for i, p := range ps {
		ps[i] = p.To(d)
	}
	return &stepModel{ps[0], ps[1], ps[2], ps[3], ps[4], ps[5], ps[6], ps[7], ps[8], ps[9], ps[10]}
}

func (m *stepModel) loss(tp *kernels.Tape, x *kernels.Tensor, targets []int32, weights []float32) *kernels.Tensor {
	h := tp.Add(x, tp.Linear(tp.GELU(tp.Linear(tp.LayerNorm(x, m.lnW, m.lnB, 1e-5), m.fc1, m.fc1b)), m.fc2, m.fc2b))
	n := tp.RMSNorm(h, m.rmsW, 1e-6)
	h = tp.Add(h, tp.Linear(tp.SwiGLU(tp.Linear(n, m.gate, nil), tp.Linear(n, m.up, nil)), m.down, nil))
	logits := tp.Linear(h, m.head, nil)
	return tp.CrossEntropy(logits, targets, kernels.CEOptions{IgnoreIndex: -1, HasIgnore: true, Weights: weights, LabelSmoothing: 0.05})
}

// TestTrainingStepMatchesCPU trains the model for five AdamW steps (weight
// decay, gradient clipping) on the host and on the device from the same
// initial weights and data, and requires every step's loss and every final
// weight to agree within 1e-4.
func TestTrainingStepMatchesCPU(t *testing.T) {
	gpu := gpuOrSkip(t)
	const (
		batch, seq, c, v = 2, 12, 32, 50
		steps            = 5
		tol              = 1e-4
	)
	rng := rand.New(rand.NewPCG(3, 4))
	host := newStepModel(rng, c, v)
	dev := host.to(gpu)
	cfg := kernels.AdamWConfig{LR: 3e-3, WeightDecay: 0.1}
	optH, optD := kernels.NewAdamW(host.params(), cfg), kernels.NewAdamW(dev.params(), cfg)
	for step := 0; step < steps; step++ {
		x := kernels.Zeros(batch, seq, c).InitNormal(rng, 1)
		targets := make([]int32, batch*seq)
		weights := make([]float32, batch*seq)
		for i := range targets {
			targets[i] = int32(rng.IntN(v))
			weights[i] = 0.5 + rng.Float32()
		}
		targets[3], targets[17] = -1, -1
		xd := x.To(gpu)
		be, _ := vulkan.Open(-1)
		sub0, disp0 := be.Submits, be.Dispatches
		var losses [2]float32
		for k, run := range []struct {
			m   *stepModel
			x   *kernels.Tensor
			opt *kernels.AdamW
		}{{host, x, optH}, {dev, xd, optD}} {
			for _, p := range run.m.params() {
				p.ZeroGrad()
			}
			tp := kernels.NewTape()
			loss := run.m.loss(tp, run.x, targets, weights)
			tp.Backward(loss)
			if _, err := kernels.ClipGradNorm(run.m.params(), 1); err != nil {
				t.Fatal(err)
			}
			run.opt.Step()
			losses[k] = loss.Item()
		}
		if d := math.Abs(float64(losses[0] - losses[1])); d > tol {
			t.Fatalf("step %d: loss %v on the device, %v on the CPU", step, losses[1], losses[0])
		}
		t.Logf("step %d: loss CPU %.6f device %.6f (device: %d dispatches in %d submissions)", step, losses[0], losses[1], be.Dispatches-disp0, be.Submits-sub0)
	}
	var worst float64
	for i, p := range host.params() {
		got := dev.params()[i].HostData()
		for j, w := range p.Data {
			d := math.Abs(float64(got[j] - w))
			worst = max(worst, d)
			if d > tol {
				t.Fatalf("%s[%d] = %v on the device, %v on the CPU", p.Name, j, got[j], w)
			}
		}
	}
	m, _ := optD.Moments(2)
	mh, _ := optH.Moments(2)
	if i, ok := closeTo(m, mh, 1e-5, 1e-3); !ok {
		t.Errorf("first moment of fc1 [%d]: %v on the device, %v on the CPU", i, m[i], mh[i])
	}
	t.Logf("largest weight difference after %d steps: %.2g", steps, worst)
}
