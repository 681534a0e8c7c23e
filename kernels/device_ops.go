package kernels

import (
	"fmt"
	"math"

	"github.com/loomtrain/loom/kernels/internal/device"
)

// The device implementations of the ops. Each Tape method that has one
// starts with a branch to it when an input lives on a device (the host path
// stays a direct call); the branch checks shapes the same way, runs the
// backend's kernels, and records a backward rule that runs on the device
// and accumulates into device gradient buffers. Ops with no device
// implementation panic with a *DeviceError (hostOnly).

func view(b device.Buffer, off int) device.View { return device.View{Buf: b, Off: off} }

// devGemm is the device gemmFn over views: C = alpha·op(A)·op(B) + beta·C.
func devGemm(be device.Backend, ta, tb bool, m, n, k int, alpha float32, a device.View, lda int, b device.View, ldb int, beta float32, c device.View, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	be.Gemm(device.Gemm{TransA: ta, TransB: tb, M: m, N: n, K: k, Alpha: alpha, Beta: beta, A: a, B: b, C: c, LDA: lda, LDB: ldb, LDC: ldc, Batch: 1})
}

// matmulDev is matmulFwd/matmulBwd on a device (the same GEMM calls, on
// views at the batch offsets).
func (tp *Tape) matmulDev(a, b *Tensor, transA, transB bool, p mmPlan) *Tensor {
	be, spec := place("Matmul", &a, &b)
	out := newOnDevice(be, spec, p.out)
	m, n, k := p.m, p.n, p.k
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	A, B, C := a.d.data, b.d.data, out.d.data
	if p.aBatched && !p.bBatched && !transA {
		devGemm(be, false, transB, p.batch*m, n, k, 1, view(A, 0), lda, view(B, 0), ldb, 0, view(C, 0), n)
	} else {
		for bi := 0; bi < p.batch; bi++ {
			ao, bo := 0, 0
			if p.aBatched {
				ao = bi * m * k
			}
			if p.bBatched {
				bo = bi * k * n
			}
			devGemm(be, transA, transB, m, n, k, 1, view(A, ao), lda, view(B, bo), ldb, 0, view(C, bi*m*n), n)
		}
	}
	tp.record("Matmul", out, func() {
		var da, db device.Buffer
		if wants(a) {
			da = a.devGrad()
		}
		if wants(b) {
			db = b.devGrad()
		}
		dc := out.d.grad
		m, n, k, batch := p.m, p.n, p.k, p.batch
		if p.aBatched && !p.bBatched && !transA {
			m *= batch
			batch = 1
		}
		for bi := 0; bi < batch; bi++ {
			ao, bo := 0, 0
			if p.aBatched {
				ao = bi * m * k
			}
			if p.bBatched {
				bo = bi * k * n
			}
			Av, Bv, dC := view(A, ao), view(B, bo), view(dc, bi*m*n)
			if da != nil {
				dA := view(da, ao)
				switch {
				case !transA && !transB:
					devGemm(be, false, true, m, k, n, 1, dC, n, Bv, n, 1, dA, k)
				case !transA && transB:
					devGemm(be, false, false, m, k, n, 1, dC, n, Bv, k, 1, dA, k)
				case transA && !transB:
					devGemm(be, false, true, k, m, n, 1, Bv, n, dC, n, 1, dA, m)
				default:
					devGemm(be, true, true, k, m, n, 1, Bv, k, dC, n, 1, dA, m)
				}
			}
			if db != nil {
				dB := view(db, bo)
				switch {
				case !transA && !transB:
					devGemm(be, true, false, k, n, m, 1, Av, k, dC, n, 1, dB, n)
				case !transA && transB:
					devGemm(be, true, false, n, k, m, 1, dC, n, Av, k, 1, dB, k)
				case transA && !transB:
					devGemm(be, false, false, k, n, m, 1, Av, m, dC, n, 1, dB, n)
				default:
					devGemm(be, true, true, n, k, m, 1, dC, n, Av, m, 1, dB, k)
				}
			}
		}
	}, a, b)
	return out
}

// linearDev is Linear on a device: y = x·wᵀ (+ bias broadcast over rows).
func (tp *Tape) linearDev(x, w, bias *Tensor, rows, in, outDim int, os []int) *Tensor {
	be, spec := place("Linear", &x, &w, &bias)
	y := newOnDevice(be, spec, os)
	devGemm(be, false, true, rows, outDim, in, 1, view(x.d.data, 0), in, view(w.d.data, 0), in, 0, view(y.d.data, 0), outDim)
	bc := device.Bcast{Out: []int{rows, outDim}, SA: []int{outDim, 1}, SB: []int{0, 1}}
	if bias != nil && rows > 0 {
		be.Binary(device.Add, bc, y.d.data, bias.d.data, y.d.data)
	}
	tp.record("Linear", y, func() {
		dy := y.d.grad
		if wants(x) {
			devGemm(be, false, false, rows, in, outDim, 1, view(dy, 0), outDim, view(w.d.data, 0), in, 1, view(x.devGrad(), 0), in)
		}
		if wants(w) {
			devGemm(be, true, false, outDim, in, rows, 1, view(dy, 0), outDim, view(x.d.data, 0), in, 1, view(w.devGrad(), 0), in)
		}
		if wants(bias) && rows > 0 {
			be.BinaryBwd(device.Add, bc, 1, y.d.data, bias.d.data, dy, bias.devGrad())
		}
	}, x, w, bias)
	return y
}

// binaryDev is Add/Sub/Mul/Div with broadcasting on a device.
func (tp *Tape) binaryDev(k binKind, a, b *Tensor, p bcast) *Tensor {
	be, spec := place(binNames[k], &a, &b)
	if len(p.out) > device.MaxDims {
		panic(&DeviceError{Op: binNames[k], Msg: fmt.Sprintf("%d dimensions; the device takes at most %d", len(p.out), device.MaxDims)})
	}
	out := newOnDevice(be, spec, p.out)
	bc := device.Bcast{Out: p.out, SA: p.sa, SB: p.sb}
	op := device.BinaryOp(k)
	if p.n > 0 {
		be.Binary(op, bc, a.d.data, b.d.data, out.d.data)
	}
	tp.record(binNames[k], out, func() {
		if p.n == 0 {
			return
		}
		if wants(a) {
			be.BinaryBwd(op, bc, 0, a.d.data, b.d.data, out.d.grad, a.devGrad())
		}
		if wants(b) {
			be.BinaryBwd(op, bc, 1, a.d.data, b.d.data, out.d.grad, b.devGrad())
		}
	}, a, b)
	return out
}

// affineDev is Scale (s·a) and AddScalar (a + t) on a device.
func (tp *Tape) affineDev(name string, a *Tensor, s, t float32) *Tensor {
	be, spec := onDevice(name, a)
	out := newOnDevice(be, spec, a.Shape)
	n := a.Size()
	be.Unary(device.ScaleShift, n, s, t, a.d.data, out.d.data)
	tp.record(name, out, func() { be.Axpy(n, s, view(out.d.grad, 0), view(a.devGrad(), 0)) }, a)
	return out
}

// unaryDev is an activation on a device.
func (tp *Tape) unaryDev(k unaryKind, x *Tensor) *Tensor {
	be, spec := onDevice(unaryNames[k], x)
	out := newOnDevice(be, spec, x.Shape)
	n := x.Size()
	be.Unary(device.UnaryOp(k), n, 1, 0, x.d.data, out.d.data)
	tp.record(unaryNames[k], out, func() { be.UnaryBwd(device.UnaryOp(k), n, 1, x.d.data, out.d.grad, x.devGrad()) }, x)
	return out
}

func (tp *Tape) swigluDev(gate, up *Tensor) *Tensor {
	be, spec := place("SwiGLU", &gate, &up)
	out := newOnDevice(be, spec, gate.Shape)
	n := gate.Size()
	be.SwiGLU(n, gate.d.data, up.d.data, out.d.data)
	tp.record("SwiGLU", out, func() {
		be.SwiGLUBwd(n, gate.d.data, up.d.data, out.d.grad, devGradOrNil(gate), devGradOrNil(up))
	}, gate, up)
	return out
}

func (tp *Tape) softmaxDev(name string, log bool, x *Tensor, rows, n int) *Tensor {
	be, spec := onDevice(name, x)
	out := newOnDevice(be, spec, x.Shape)
	if rows > 0 && n > 0 {
		be.Softmax(rows, n, log, x.d.data, out.d.data)
	}
	tp.record(name, out, func() {
		if rows > 0 && n > 0 {
			be.SoftmaxBwd(rows, n, log, out.d.data, out.d.grad, x.devGrad())
		}
	}, x)
	return out
}

// normDev is LayerNorm (rms false) or RMSNorm on a device.
func (tp *Tape) normDev(name string, rms bool, x, w, b *Tensor, eps float32, rows, c int) *Tensor {
	be, spec := place(name, &x, &w, &b)
	out := newOnDevice(be, spec, x.Shape)
	a := device.NormArgs{Rows: rows, C: c, RMS: rms, Eps: eps, X: x.d.data, W: devData(w), B: devData(b), Y: out.d.data,
		Mean: be.Alloc(max(rows, 1)), Rstd: be.Alloc(max(rows, 1))}
	if rows > 0 && c > 0 {
		be.Norm(a)
	}
	tp.record(name, out, func() {
		if rows == 0 || c == 0 {
			return
		}
		g := a
		g.DY, g.DX, g.DW, g.DB = out.d.grad, devGradOrNil(x), devGradOrNil(w), devGradOrNil(b)
		be.NormBwd(g)
	}, x, w, b)
	return out
}

// crossEntropyDev is CrossEntropy on a device. The targets, weights and
// normaliser come from the host (they are host inputs); the loss stays on
// the device.
func (tp *Tape) crossEntropyDev(logits *Tensor, targets []int32, o CEOptions, rows, v int) *Tensor {
	be, spec := onDevice("CrossEntropy", logits)
	w := make([]float32, rows)
	tgt := targets
	var den float64
	for r, t := range targets {
		wr := float32(1)
		if o.Weights != nil {
			wr = o.Weights[r]
		}
		if o.HasIgnore && t == o.IgnoreIndex { // weight 0 and any valid class
			if &tgt[0] == &targets[0] {
				tgt = append([]int32(nil), targets...)
			}
			tgt[r], wr = 0, 0
		} else {
			den += float64(wr)
		}
		w[r] = wr
	}
	norm := 1.0
	if !o.Sum {
		norm = den
	}
	inv := float32(0)
	if norm != 0 {
		inv = float32(1 / norm)
	}
	logp := be.Alloc(max(rows*v, 1))
	tg, wb := be.Alloc(max(rows, 1)), be.Alloc(max(rows, 1))
	be.UploadInt32(tg, tgt)
	be.Upload(wb, w)
	out := newOnDevice(be, spec, []int{1})
	a := device.CEArgs{Rows: rows, V: v, LogP: logp, Targets: tg, Weights: wb, Eps: o.LabelSmoothing, InvNorm: inv, Loss: out.d.data}
	if rows > 0 && v > 0 {
		be.Softmax(rows, v, true, logits.d.data, logp)
		be.CrossEntropy(a)
	}
	tp.record("CrossEntropy", out, func() {
		if norm == 0 || rows == 0 {
			return
		}
		g := a
		g.Loss, g.DLoss, g.DLogits = nil, out.d.grad, logits.devGrad()
		be.CrossEntropy(g)
	}, logits)
	return out
}

func (tp *Tape) reshapeDev(a *Tensor, shape []int) *Tensor {
	out := &Tensor{Shape: shape, d: &devTensor{be: a.d.be, spec: a.d.spec, n: a.d.n, data: a.d.data}}
	tp.record("Reshape", out, func() {
		if a.d.grad == nil { // first gradient of a: take out's buffer
			a.d.grad = out.d.grad
			return
		}
		a.d.be.Axpy(a.d.n, 1, view(out.d.grad, 0), view(a.d.grad, 0))
	}, a)
	return out
}

func (tp *Tape) sumDev(a *Tensor) *Tensor {
	be, spec := onDevice("Sum", a)
	out := newOnDevice(be, spec, []int{1})
	n := a.Size()
	be.Sum(n, 1, a.d.data, out.d.data)
	tp.record("Sum", out, func() { be.SumBwd(n, 1, out.d.grad, a.devGrad()) }, a)
	return out
}

// adamwDev is one AdamW update of a device parameter; its moments live on
// the device (o.dm, o.dv), allocated on first use.
func (o *AdamW) adamwDev(i int, p *Tensor, lr, b1, b2, bc1, bc2 float64) {
	if o.dm == nil {
		o.dm, o.dv = make([]device.Buffer, len(o.params)), make([]device.Buffer, len(o.params))
	}
	be := p.d.be
	if o.dm[i] == nil {
		o.dm[i], o.dv[i] = be.Alloc(p.d.n), be.Alloc(p.d.n)
		be.Upload(o.dm[i], o.m[i])
		be.Upload(o.dv[i], o.v[i])
	}
	shrink := float32(1)
	if o.decay[i] {
		shrink = float32(1 - lr*float64(o.Config.WeightDecay))
	}
	be.AdamWStep(device.AdamW{N: p.d.n, P: p.d.data, G: p.d.grad, M: o.dm[i], V: o.dv[i],
		B1: float32(b1), B2: float32(b2), Eps: o.Config.Eps, Shrink: shrink, StepSize: float32(lr / bc1), InvS: float32(1 / math.Sqrt(bc2))})
}
