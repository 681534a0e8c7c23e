package kernels

import "math"

// ---------------------------------------------------------------------------
// Broadcast binary ops: out = a ∘ b with NumPy broadcasting (shapes are
// aligned on the right; a dimension of 1 or a missing one repeats).
// ---------------------------------------------------------------------------

type binKind int

const (
	binAdd binKind = iota
	binSub
	binMul
	binDiv
)

var binNames = [...]string{"Add", "Sub", "Mul", "Div"}

type bcast struct {
	out    []int
	n      int
	mode   int // 0 same shape, 1 b repeats along a, 2 a repeats along b, 3 general
	na, nb int
	sa, sb []int // strides of a and b per output dim (0 where broadcast)
}

func planBcast(op string, as, bs []int) bcast {
	nd := max(len(as), len(bs))
	out := make([]int, nd)
	sa, sb := make([]int, nd), make([]int, nd)
	stA, stB := 1, 1
	for i := nd - 1; i >= 0; i-- {
		da, db := 1, 1
		if j := i - (nd - len(as)); j >= 0 {
			da = as[j]
		}
		if j := i - (nd - len(bs)); j >= 0 {
			db = bs[j]
		}
		switch {
		case da == db:
			out[i] = da
		case da == 1:
			out[i] = db
		case db == 1:
			out[i] = da
		default:
			panic(shapeErr(op, as, bs, "cannot broadcast: dimension %d is %d and %d", i, da, db))
		}
		if da != 1 || out[i] == 1 {
			sa[i] = stA
		}
		if db != 1 || out[i] == 1 {
			sb[i] = stB
		}
		stA *= da
		stB *= db
	}
	p := bcast{out: out, n: numel(out), na: numel(as), nb: numel(bs), sa: sa, sb: sb}
	switch {
	case p.na == p.n && p.nb == p.n:
		p.mode = 0
	case p.na == p.n && isSuffix(bs, out):
		p.mode = 1
	case p.nb == p.n && isSuffix(as, out):
		p.mode = 2
	default:
		p.mode = 3
	}
	return p
}

// isSuffix reports whether s (ignoring leading 1s) equals the trailing dims of out.
func isSuffix(s, out []int) bool {
	for len(s) > 0 && s[0] == 1 {
		s = s[1:]
	}
	if len(s) > len(out) {
		return false
	}
	return sameShape(s, out[len(out)-len(s):])
}

// index maps output element i to the elements of a and b.
func (p *bcast) index(i int) (ia, ib int) {
	switch p.mode {
	case 0:
		return i, i
	case 1:
		return i, i % max(p.nb, 1)
	case 2:
		return i % max(p.na, 1), i
	}
	for d := len(p.out) - 1; d >= 0; d-- {
		c := i % p.out[d]
		i /= p.out[d]
		ia += c * p.sa[d]
		ib += c * p.sb[d]
	}
	return ia, ib
}

func binFwd[T float](k binKind, p *bcast, a, b, out []T) {
	if o32, ok := any(out).([]float32); ok && k == binAdd && (p.mode == 0 || (p.mode == 1 && p.nb > 0)) {
		a32, b32 := any(a).([]float32), any(b).([]float32)
		if p.mode == 0 {
			addVec(o32, a32, b32)
		} else {
			copy(o32, a32[:len(o32)])
			addRows(o32[:p.n], b32[:p.nb])
		}
		return
	}
	if p.mode == 0 {
		switch k {
		case binAdd:
			for i := range out {
				out[i] = a[i] + b[i]
			}
		case binSub:
			for i := range out {
				out[i] = a[i] - b[i]
			}
		case binMul:
			for i := range out {
				out[i] = a[i] * b[i]
			}
		case binDiv:
			for i := range out {
				out[i] = a[i] / b[i]
			}
		}
		return
	}
	if p.mode == 1 && k == binAdd && p.nb > 0 {
		for r := 0; r < p.n; r += p.nb {
			o, x := out[r:r+p.nb], a[r:r+p.nb]
			for j, bv := range b[:p.nb] {
				o[j] = x[j] + bv
			}
		}
		return
	}
	for i := range out {
		ia, ib := p.index(i)
		switch k {
		case binAdd:
			out[i] = a[ia] + b[ib]
		case binSub:
			out[i] = a[ia] - b[ib]
		case binMul:
			out[i] = a[ia] * b[ib]
		case binDiv:
			out[i] = a[ia] / b[ib]
		}
	}
}

// binBwd accumulates da and db (either may be nil) from dout.
func binBwd[T float](k binKind, p *bcast, a, b, dout, da, db []T) {
	if (k == binAdd || k == binSub) && (p.mode == 0 || (p.mode == 1 && p.nb > 0)) {
		if d32, ok := any(dout).([]float32); ok && k == binAdd {
			if da != nil {
				addTo(any(da).([]float32)[:len(d32)], d32)
			}
			if db != nil && p.mode == 0 {
				addTo(any(db).([]float32)[:len(d32)], d32)
			} else if db != nil {
				sumRowsInto(any(db).([]float32)[:p.nb], d32[:p.n])
			}
			return
		}
		sign := T(1)
		if k == binSub {
			sign = -1
		}
		if da != nil {
			for i, g := range dout {
				da[i] += g
			}
		}
		if db != nil && p.mode == 0 {
			for i, g := range dout {
				db[i] += sign * g
			}
		} else if db != nil {
			for r := 0; r < p.n; r += p.nb {
				for j, g := range dout[r : r+p.nb] {
					db[j] += sign * g
				}
			}
		}
		return
	}
	for i, g := range dout {
		ia, ib := p.index(i)
		switch k {
		case binAdd:
			if da != nil {
				da[ia] += g
			}
			if db != nil {
				db[ib] += g
			}
		case binSub:
			if da != nil {
				da[ia] += g
			}
			if db != nil {
				db[ib] -= g
			}
		case binMul:
			if da != nil {
				da[ia] += g * b[ib]
			}
			if db != nil {
				db[ib] += g * a[ia]
			}
		case binDiv:
			if da != nil {
				da[ia] += g / b[ib]
			}
			if db != nil {
				db[ib] -= g * a[ia] / (b[ib] * b[ib])
			}
		}
	}
}

func (tp *Tape) binary(k binKind, a, b *Tensor) *Tensor {
	p := planBcast(binNames[k], a.Shape, b.Shape)
	if a.d != nil || b.d != nil {
		return tp.binaryDev(k, a, b, p)
	}
	out := Zeros(p.out...)
	binFwd(k, &p, a.Data, b.Data, out.Data)
	tp.record(binNames[k], out, func() {
		var da, db []float32
		if (k == binAdd || k == binSub) && p.mode == 0 && a != b && wants(a) && a.Grad == nil {
			// d(out)/da is the identity and out.Grad is dead after this
			// rule: hand a the buffer instead of clearing and adding one
			// (the residual stream of a transformer).
			a.Grad = out.Grad
		} else if wants(a) {
			da = a.gradBuf()
		}
		if wants(b) {
			db = b.gradBuf()
		}
		binBwd(k, &p, a.Data, b.Data, out.Grad, da, db)
	}, a, b)
	return out
}

// Add returns a + b with broadcasting.
func (tp *Tape) Add(a, b *Tensor) *Tensor { return tp.binary(binAdd, a, b) }

// Sub returns a − b with broadcasting.
func (tp *Tape) Sub(a, b *Tensor) *Tensor { return tp.binary(binSub, a, b) }

// Mul returns a ∘ b (elementwise) with broadcasting.
func (tp *Tape) Mul(a, b *Tensor) *Tensor { return tp.binary(binMul, a, b) }

// Div returns a / b (elementwise) with broadcasting.
func (tp *Tape) Div(a, b *Tensor) *Tensor { return tp.binary(binDiv, a, b) }

// Scale returns s·a.
func (tp *Tape) Scale(a *Tensor, s float32) *Tensor {
	if a.d != nil {
		return tp.affineDev("Scale", a, s, 0)
	}
	out := Zeros(a.Shape...)
	for i, v := range a.Data {
		out.Data[i] = s * v
	}
	tp.record("Scale", out, func() {
		ga := a.gradBuf()
		for i, g := range out.Grad {
			ga[i] += s * g
		}
	}, a)
	return out
}

// AddScalar returns a + s.
func (tp *Tape) AddScalar(a *Tensor, s float32) *Tensor {
	if a.d != nil {
		return tp.affineDev("AddScalar", a, 1, s)
	}
	out := Zeros(a.Shape...)
	for i, v := range a.Data {
		out.Data[i] = v + s
	}
	tp.record("AddScalar", out, func() {
		ga := a.gradBuf()
		for i, g := range out.Grad {
			ga[i] += g
		}
	}, a)
	return out
}

// ---------------------------------------------------------------------------
// Unary activations. Each has f(x) and f'(x); the float64 instantiation is
// the reference, the float32 one may use a faster approximation (fast.go).
// ---------------------------------------------------------------------------

type unaryKind int

const (
	unGELU    unaryKind = iota // tanh approximation (GPT-2, nn.GELU(approximate="tanh"))
	unGELUErf                  // exact erf form (nn.GELU())
	unSiLU
	unReLU
	unTanh
	unSigmoid
	unExp
	unSquare
)

var unaryNames = [...]string{"GELU", "GELUErf", "SiLU", "ReLU", "Tanh", "Sigmoid", "Exp", "Square"}

const sqrt2OverPi = 0.7978845608028654

func unaryRef(k unaryKind, x float64) (y, dy float64) {
	switch k {
	case unGELU:
		u := sqrt2OverPi * (x + 0.044715*x*x*x)
		t := math.Tanh(u)
		du := sqrt2OverPi * (1 + 3*0.044715*x*x)
		return 0.5 * x * (1 + t), 0.5*(1+t) + 0.5*x*(1-t*t)*du
	case unGELUErf:
		cdf := 0.5 * (1 + math.Erf(x/math.Sqrt2))
		pdf := math.Exp(-0.5*x*x) / math.Sqrt(2*math.Pi)
		return x * cdf, cdf + x*pdf
	case unSiLU:
		s := 1 / (1 + math.Exp(-x))
		return x * s, s * (1 + x*(1-s))
	case unReLU:
		if x > 0 {
			return x, 1
		}
		return 0, 0
	case unTanh:
		t := math.Tanh(x)
		return t, 1 - t*t
	case unSigmoid:
		s := 1 / (1 + math.Exp(-x))
		return s, s * (1 - s)
	case unExp:
		e := math.Exp(x)
		return e, e
	case unSquare:
		return x * x, 2 * x
	}
	panic("kernels: unknown unary op")
}

func unaryFwd[T float](k unaryKind, x, y []T) {
	for i, v := range x {
		r, _ := unaryRef(k, float64(v))
		y[i] = T(r)
	}
}

func unaryBwd[T float](k unaryKind, x, dy, dx []T) {
	for i, v := range x {
		_, d := unaryRef(k, float64(v))
		dx[i] += T(d) * dy[i]
	}
}

func (tp *Tape) unary(k unaryKind, x *Tensor) *Tensor {
	if x.d != nil {
		return tp.unaryDev(k, x)
	}
	out := Zeros(x.Shape...)
	unaryFwd32(k, x.Data, out.Data)
	tp.record(unaryNames[k], out, func() {
		if k == unGELU && haveAVX2 { // the AVX2 GELU backward can overwrite: skip clearing a recycled buffer
			dx, fresh := x.gradDst()
			unaryBwd32Set(k, x.Data, out.Grad, dx, fresh)
			return
		}
		unaryBwd32(k, x.Data, out.Grad, x.gradBuf())
	}, x)
	return out
}

// GELU is the tanh approximation 0.5·x·(1+tanh(√(2/π)(x+0.044715x³))).
func (tp *Tape) GELU(x *Tensor) *Tensor { return tp.unary(unGELU, x) }

// GELUErf is the exact GELU x·Φ(x).
func (tp *Tape) GELUErf(x *Tensor) *Tensor { return tp.unary(unGELUErf, x) }

// SiLU is x·σ(x).
func (tp *Tape) SiLU(x *Tensor) *Tensor { return tp.unary(unSiLU, x) }

// ReLU is max(x, 0).
func (tp *Tape) ReLU(x *Tensor) *Tensor { return tp.unary(unReLU, x) }

// Tanh is tanh(x).
func (tp *Tape) Tanh(x *Tensor) *Tensor { return tp.unary(unTanh, x) }

// Sigmoid is 1/(1+e^−x).
func (tp *Tape) Sigmoid(x *Tensor) *Tensor { return tp.unary(unSigmoid, x) }

// Exp is e^x.
func (tp *Tape) Exp(x *Tensor) *Tensor { return tp.unary(unExp, x) }

// Square is x².
func (tp *Tape) Square(x *Tensor) *Tensor { return tp.unary(unSquare, x) }

// SwiGLU returns SiLU(gate) ∘ up (LLaMA's MLP); gate and up have one shape.
func (tp *Tape) SwiGLU(gate, up *Tensor) *Tensor {
	if !sameShape(gate.Shape, up.Shape) {
		panic(shapeErr("SwiGLU", gate.Shape, up.Shape, "gate and up must have the same shape"))
	}
	if gate.d != nil || up.d != nil {
		return tp.swigluDev(gate, up)
	}
	out := Zeros(gate.Shape...)
	swigluFwd(gate.Data, up.Data, out.Data)
	tp.record("SwiGLU", out, func() {
		var dg, du []float32
		if wants(gate) {
			dg = gate.gradBuf()
		}
		if wants(up) {
			du = up.gradBuf()
		}
		swigluBwd(gate.Data, up.Data, out.Grad, dg, du)
	}, gate, up)
	return out
}

func swigluFwd[T float](g, u, out []T) {
	if g32, ok := any(g).([]float32); ok {
		swigluFwd32(g32, any(u).([]float32), any(out).([]float32))
		return
	}
	for i, x := range g {
		s := 1 / (1 + math.Exp(-float64(x)))
		out[i] = T(float64(x) * s * float64(u[i]))
	}
}

func swigluBwd[T float](g, u, dout, dg, du []T) {
	if g32, ok := any(g).([]float32); ok {
		var dg32, du32 []float32
		if dg != nil {
			dg32 = any(dg).([]float32)
		}
		if du != nil {
			du32 = any(du).([]float32)
		}
		swigluBwd32(g32, any(u).([]float32), any(dout).([]float32), dg32, du32)
		return
	}
	for i, x := range g {
		xf := float64(x)
		s := 1 / (1 + math.Exp(-xf))
		if dg != nil {
			dg[i] += T(float64(dout[i]) * float64(u[i]) * s * (1 + xf*(1-s)))
		}
		if du != nil {
			du[i] += T(float64(dout[i]) * xf * s)
		}
	}
}
