package kernels

import (
	"fmt"
	"math"
)

// ---------------------------------------------------------------------------
// Softmax and log-softmax over the last dimension.
// x, y are [rows, n].
// ---------------------------------------------------------------------------

func softmaxFwd[T float](rows, n int, x, y []T) {
	if x32, ok := any(x).([]float32); ok {
		softmaxFwd32(rows, n, x32, any(y).([]float32))
		return
	}
	for r := 0; r < rows; r++ {
		xr, yr := x[r*n:(r+1)*n], y[r*n:(r+1)*n]
		m := T(math.Inf(-1))
		for _, v := range xr {
			m = max(m, v)
		}
		var s float64
		for j, v := range xr {
			e := T(math.Exp(float64(v - m)))
			yr[j] = e
			s += float64(e)
		}
		inv := T(1 / s)
		for j := range yr {
			yr[j] *= inv
		}
	}
}

// softmaxBwd: dx = y ∘ (dy − Σ dy∘y).
func softmaxBwd[T float](rows, n int, y, dy, dx []T) {
	for r := 0; r < rows; r++ {
		yr, gr, dr := y[r*n:(r+1)*n], dy[r*n:(r+1)*n], dx[r*n:(r+1)*n]
		var dot float64
		for j := range yr {
			dot += float64(yr[j] * gr[j])
		}
		for j := range yr {
			dr[j] += yr[j] * (gr[j] - T(dot))
		}
	}
}

func logSoftmaxFwd[T float](rows, n int, x, y []T) {
	if x32, ok := any(x).([]float32); ok {
		logSoftmaxFwd32(rows, n, x32, any(y).([]float32))
		return
	}
	for r := 0; r < rows; r++ {
		xr, yr := x[r*n:(r+1)*n], y[r*n:(r+1)*n]
		lse := T(logSumExp(xr))
		for j, v := range xr {
			yr[j] = v - lse
		}
	}
}

// logSoftmaxBwd: dx = dy − softmax(x)·Σdy, with softmax = exp(y).
func logSoftmaxBwd[T float](rows, n int, y, dy, dx []T) {
	if y32, ok := any(y).([]float32); ok {
		logSoftmaxBwd32(rows, n, y32, any(dy).([]float32), any(dx).([]float32))
		return
	}
	for r := 0; r < rows; r++ {
		yr, gr, dr := y[r*n:(r+1)*n], dy[r*n:(r+1)*n], dx[r*n:(r+1)*n]
		var s float64
		for _, g := range gr {
			s += float64(g)
		}
		for j := range yr {
			dr[j] += gr[j] - T(math.Exp(float64(yr[j]))*s)
		}
	}
}

// logSumExp returns log Σ exp(x) computed stably in float64.
func logSumExp[T float](x []T) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	if math.IsInf(m, -1) {
		return m
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	return m + math.Log(s)
}

func lastDim(op string, a *Tensor) (rows, n int) {
	if len(a.Shape) == 0 {
		panic(shapeErr(op, a.Shape, nil, "need at least one dimension"))
	}
	n = a.Shape[len(a.Shape)-1]
	return numel(a.Shape[:len(a.Shape)-1]), n
}

// Softmax normalises the last dimension.
func (tp *Tape) Softmax(x *Tensor) *Tensor {
	rows, n := lastDim("Softmax", x)
	if x.d != nil {
		return tp.softmaxDev("Softmax", false, x, rows, n)
	}
	out := Zeros(x.Shape...)
	softmaxFwd(rows, n, x.Data, out.Data)
	tp.record("Softmax", out, func() { softmaxBwd(rows, n, out.Data, out.Grad, x.gradBuf()) }, x)
	return out
}

// LogSoftmax is log(Softmax(x)) over the last dimension, computed stably.
func (tp *Tape) LogSoftmax(x *Tensor) *Tensor {
	rows, n := lastDim("LogSoftmax", x)
	if x.d != nil {
		return tp.softmaxDev("LogSoftmax", true, x, rows, n)
	}
	out := Zeros(x.Shape...)
	logSoftmaxFwd(rows, n, x.Data, out.Data)
	tp.record("LogSoftmax", out, func() { logSoftmaxBwd(rows, n, out.Data, out.Grad, x.gradBuf()) }, x)
	return out
}

// ---------------------------------------------------------------------------
// Cross-entropy over logits [..., V] and integer targets (one per row).
// ---------------------------------------------------------------------------

// CEOptions configures CrossEntropy. The zero value is PyTorch's default
// (mean over all rows, no smoothing) except that IgnoreIndex must be set
// explicitly if used (-100 is PyTorch's default; 0 is a valid class here).
type CEOptions struct {
	// IgnoreIndex: rows whose target equals it contribute nothing (weight 0).
	// Used only when HasIgnore is set.
	IgnoreIndex int32
	HasIgnore   bool
	// Weights are per-row loss weights (len = rows), e.g. 0 on prompt tokens
	// or per-modality normalisation; nil means 1 for every row.
	Weights []float32
	// LabelSmoothing ε mixes the one-hot target with the uniform
	// distribution: target = (1−ε)·onehot + ε/V (as torch's label_smoothing).
	LabelSmoothing float32
	// Sum returns Σ wᵢ·ℓᵢ instead of the weighted mean Σ wᵢ·ℓᵢ / Σ wᵢ
	// (useful when the normaliser is a global token count).
	Sum bool
}

// ceFwd writes per-row losses (0 for ignored rows) and the log-softmax, and
// returns Σ w·ℓ and Σ w.
func ceFwd[T float](rows, v int, x []T, tgt []int32, o *CEOptions, logp []T, loss []T) (num, den float64) {
	eps := float64(o.LabelSmoothing)
	logSoftmaxFwd(rows, v, x, logp)
	for r := 0; r < rows; r++ {
		w := 1.0
		if o.Weights != nil {
			w = float64(o.Weights[r])
		}
		t := tgt[r]
		if o.HasIgnore && t == o.IgnoreIndex {
			loss[r] = 0
			continue
		}
		lp := logp[r*v : (r+1)*v]
		l := -(1 - eps) * float64(lp[t])
		if eps != 0 {
			var s float64
			for _, x := range lp {
				s += float64(x)
			}
			l -= eps / float64(v) * s
		}
		loss[r] = T(l)
		num += w * l
		den += w
	}
	return num, den
}

// ceBwd accumulates dx given the upstream gradient g of the reduced loss.
func ceBwd[T float](rows, v int, tgt []int32, o *CEOptions, logp []T, scale float64, dx []T) {
	if lp32, ok := any(logp).([]float32); ok {
		ceBwd32(rows, v, tgt, o, lp32, scale, any(dx).([]float32))
		return
	}
	eps := float64(o.LabelSmoothing)
	for r := 0; r < rows; r++ {
		t := tgt[r]
		if o.HasIgnore && t == o.IgnoreIndex {
			continue
		}
		w := 1.0
		if o.Weights != nil {
			w = float64(o.Weights[r])
		}
		c := w * scale
		lp, d := logp[r*v:(r+1)*v], dx[r*v:(r+1)*v]
		for j := range lp {
			q := eps / float64(v)
			if int32(j) == t {
				q += 1 - eps
			}
			d[j] += T(c * (math.Exp(float64(lp[j])) - q))
		}
	}
}

// CrossEntropy returns the (weighted) mean negative log-likelihood of
// targets under softmax(logits), shape [1]. logits is [..., V]; targets has
// one class index per row (len = Size()/V). A target outside [0, V) that is
// not the ignore index panics with an error naming the row.
func (tp *Tape) CrossEntropy(logits *Tensor, targets []int32, opt CEOptions) *Tensor {
	rows, v := lastDim("CrossEntropy", logits)
	if len(targets) != rows {
		panic(shapeErr("CrossEntropy", logits.Shape, []int{len(targets)}, "%d targets for %d rows", len(targets), rows))
	}
	if opt.Weights != nil && len(opt.Weights) != rows {
		panic(shapeErr("CrossEntropy", logits.Shape, []int{len(opt.Weights)}, "%d weights for %d rows", len(opt.Weights), rows))
	}
	for r, t := range targets {
		if opt.HasIgnore && t == opt.IgnoreIndex {
			continue
		}
		if t < 0 || int(t) >= v {
			panic(fmt.Errorf("kernels: CrossEntropy: row %d: target %d outside [0, %d)", r, t, v))
		}
	}
	if logits.d != nil {
		return tp.crossEntropyDev(logits, targets, opt, rows, v)
	}
	o := opt
	logp := make([]float32, rows*v)
	loss := make([]float32, rows)
	num, den := ceFwd(rows, v, logits.Data, targets, &o, logp, loss)
	norm := 1.0
	if !o.Sum {
		norm = den
	}
	var val float64
	if norm != 0 {
		val = num / norm
	}
	out := Scalar(float32(val))
	tp.record("CrossEntropy", out, func() {
		if norm == 0 {
			return
		}
		ceBwd(rows, v, targets, &o, logp, float64(out.Grad[0])/norm, logits.gradBuf())
	}, logits)
	return out
}

// The float32 paths below use the vector exp (fast.go) and run rows in
// parallel; the generic functions above, instantiated at float64, are their
// reference.

func softmaxFwd32(rows, n int, x, y []float32) {
	parallelRows(rows, n, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			xr, yr := x[r*n:(r+1)*n], y[r*n:(r+1)*n]
			copy(yr, xr)
			s := expSubRow(yr, rowMax(xr, float32(math.Inf(-1))))
			inv := 1 / s
			for j := range yr {
				yr[j] *= inv
			}
		}
	})
}

func logSoftmaxFwd32(rows, n int, x, y []float32) {
	parallelRows(rows, n, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			xr, yr := x[r*n:(r+1)*n], y[r*n:(r+1)*n]
			m := rowMax(xr, float32(math.Inf(-1)))
			copy(yr, xr)
			lse := m + float32(math.Log(float64(expSubRow(yr, m))))
			for j, v := range xr {
				yr[j] = v - lse
			}
		}
	})
}

func logSoftmaxBwd32(rows, n int, y, dy, dx []float32) {
	parallelRows(rows, n, func(r0, r1 int) {
		p := make([]float32, n)
		for r := r0; r < r1; r++ {
			yr, gr, dr := y[r*n:(r+1)*n], dy[r*n:(r+1)*n], dx[r*n:(r+1)*n]
			var s float32
			for _, g := range gr {
				s += g
			}
			copy(p, yr)
			expSubRow(p, 0)
			for j := range dr {
				dr[j] += gr[j] - p[j]*s
			}
		}
	})
}

func ceBwd32(rows, v int, tgt []int32, o *CEOptions, logp []float32, scale float64, dx []float32) {
	eps := float32(o.LabelSmoothing)
	parallelRows(rows, v, func(r0, r1 int) {
		p := make([]float32, v)
		for r := r0; r < r1; r++ {
			t := tgt[r]
			if o.HasIgnore && t == o.IgnoreIndex {
				continue
			}
			w := 1.0
			if o.Weights != nil {
				w = float64(o.Weights[r])
			}
			c := float32(w * scale)
			copy(p, logp[r*v:(r+1)*v])
			expSubRow(p, 0)
			d := dx[r*v : (r+1)*v]
			u := eps / float32(v)
			for j, pj := range p {
				d[j] += c * (pj - u)
			}
			d[t] -= c * (1 - eps)
		}
	})
}
