package kernels

import (
	"fmt"
	"math"

	"github.com/loomtrain/loom/kernels/internal/device"
)

// AdamWConfig holds the AdamW hyperparameters (Loshchilov & Hutter,
// decoupled weight decay; the same update as torch.optim.AdamW).
type AdamWConfig struct {
	LR          float32 // learning rate; may be changed between steps (schedules)
	Beta1       float32 // default 0.9 when 0
	Beta2       float32 // default 0.999 when 0
	Eps         float32 // default 1e-8 when 0
	WeightDecay float32 // decoupled: p ← p − LR·WeightDecay·p
	// Decay says which parameters get weight decay (a per-parameter mask).
	// nil means tensors with at least 2 dimensions (weights, not biases or
	// norm gains), the usual GPT/LLaMA convention.
	Decay func(p *Tensor) bool
}

// AdamW updates parameters in place from their Grad. Parameters with a nil
// Grad, or that no longer require gradients (frozen), are skipped and keep
// their moments. Step does not zero the gradients.
type AdamW struct {
	Config AdamWConfig
	params []*Tensor
	m, v   [][]float32
	dm, dv []device.Buffer // the moments of device parameters, on their device (nil until their first step)
	decay  []bool
	t      int
}

// NewAdamW returns an optimizer for params.
func NewAdamW(params []*Tensor, cfg AdamWConfig) *AdamW {
	if cfg.Beta1 == 0 {
		cfg.Beta1 = 0.9
	}
	if cfg.Beta2 == 0 {
		cfg.Beta2 = 0.999
	}
	if cfg.Eps == 0 {
		cfg.Eps = 1e-8
	}
	o := &AdamW{Config: cfg, params: params}
	for _, p := range params {
		o.m = append(o.m, make([]float32, p.Size()))
		o.v = append(o.v, make([]float32, p.Size()))
		d := len(p.Shape) >= 2
		if cfg.Decay != nil {
			d = cfg.Decay(p)
		}
		o.decay = append(o.decay, d)
	}
	return o
}

// Steps is the number of updates taken so far.
func (o *AdamW) Steps() int { return o.t }

// Moments returns the first and second moment buffers of parameter i (for
// checkpoints; they may be written to restore a state). For a parameter on
// a device the moments live there from its first Step on: Moments then
// returns host copies (writing them has no effect), and before that first
// Step the host buffers it returns are what the device moments start from.
func (o *AdamW) Moments(i int) (m, v []float32) {
	if o.dm != nil && o.dm[i] != nil {
		be := o.params[i].d.be
		be.Download(o.m[i], device.View{Buf: o.dm[i]})
		be.Download(o.v[i], device.View{Buf: o.dv[i]})
	}
	return o.m[i], o.v[i]
}

// SetSteps restores the step counter (for bias correction) from a checkpoint.
func (o *AdamW) SetSteps(t int) { o.t = t }

// Step applies one update.
func (o *AdamW) Step() {
	o.t++
	c := o.Config
	b1, b2 := float64(c.Beta1), float64(c.Beta2)
	bc1 := 1 - math.Pow(b1, float64(o.t))
	bc2 := 1 - math.Pow(b2, float64(o.t))
	lr := float64(c.LR)
	for i, p := range o.params {
		if p.d != nil {
			if p.d.grad != nil && p.requiresGrad {
				o.adamwDev(i, p, lr, b1, b2, bc1, bc2)
			}
			continue
		}
		if p.Grad == nil || !p.requiresGrad {
			continue
		}
		adamwFast(p.Data, p.Grad, o.m[i], o.v[i], lr, b1, b2, float64(c.Eps), bc1, bc2, o.decay[i], float64(c.WeightDecay))
	}
}

// adamwFast is adamwUpdate with the AVX2 kernel on all but the last n mod 8
// values; the kernel repeats adamwUpdate's operations in the same order
// (tested bit for bit).
func adamwFast(p, g, m, v []float32, lr, b1, b2, eps, bc1, bc2 float64, decay bool, wd float64) {
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	if n8 := len(p) &^ 7; haveAVX2 && n8 > 0 {
		shrink := float32(1)
		if decay {
			shrink = float32(1 - lr*wd)
		}
		adamwAVX2(&p[0], &g[0], &m[0], &v[0], n8, float32(b1), 1-float32(b1), float32(b2), 1-float32(b2),
			shrink, float32(lr/bc1), 1/math.Sqrt(bc2), eps)
		p, g, m, v = p[n8:], g[n8:], m[n8:], v[n8:]
	}
	adamwUpdate(p, g, m, v, lr, b1, b2, eps, bc1, bc2, decay, wd)
}

func adamwUpdate(p, g, m, v []float32, lr, b1, b2, eps, bc1, bc2 float64, decay bool, wd float64) {
	stepSize := float32(lr / bc1)
	sq := 1 / math.Sqrt(bc2)
	shrink := float32(1)
	if decay {
		shrink = float32(1 - lr*wd)
	}
	fb1, fb2 := float32(b1), float32(b2)
	for j, gj := range g {
		mj := fb1*m[j] + (1-fb1)*gj
		vj := fb2*v[j] + (1-fb2)*gj*gj
		m[j], v[j] = mj, vj
		den := float32(math.Sqrt(float64(vj))*sq + eps)
		p[j] = p[j]*shrink - stepSize*mj/den
	}
}

// ClipGradNorm scales every gradient so that their global L2 norm is at most
// maxNorm (as torch.nn.utils.clip_grad_norm_, with its 1e-6 guard), and
// returns the norm before clipping. A non-finite norm is returned as an
// error naming the first parameter with a non-finite gradient, and nothing
// is scaled.
//
// Device parameters' gradients are downloaded to compute the norm and
// scaled on their device.
func ClipGradNorm(params []*Tensor, maxNorm float32) (float32, error) {
	grads := make([][]float32, len(params))
	for i, p := range params {
		grads[i] = p.HostGrad()
	}
	var s float64
	for _, gs := range grads {
		for _, g := range gs {
			s += float64(g) * float64(g)
		}
	}
	norm := math.Sqrt(s)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		for i, p := range params {
			for j, g := range grads[i] {
				if math.IsNaN(float64(g)) || math.IsInf(float64(g), 0) {
					return float32(norm), fmt.Errorf("kernels: ClipGradNorm: gradient of %s[%d] is %v", p, j, g)
				}
			}
		}
		return float32(norm), fmt.Errorf("kernels: ClipGradNorm: gradient norm overflows")
	}
	if coef := float64(maxNorm) / (norm + 1e-6); coef < 1 {
		for _, p := range params {
			if p.d != nil && p.d.grad != nil {
				p.d.be.Unary(device.ScaleShift, p.d.n, float32(coef), 0, p.d.grad, p.d.grad)
				continue
			}
			for j := range p.Grad {
				p.Grad[j] = float32(float64(p.Grad[j]) * coef)
			}
		}
	}
	return float32(norm), nil
}
