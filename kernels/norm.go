package kernels

import "math"

// ---------------------------------------------------------------------------
// LayerNorm and RMSNorm over the last dimension (C).
// x, y are [rows, C]; w, b are [C] (either may be nil: no affine part);
// mean and rstd are [rows], saved by forward for backward.
// ---------------------------------------------------------------------------

func layerNormFwd[T float](rows, c int, x, w, b, y, mean, rstd []T, eps float64) {
	for r := 0; r < rows; r++ {
		xr, yr := x[r*c:(r+1)*c], y[r*c:(r+1)*c]
		var s float64
		for _, v := range xr {
			s += float64(v)
		}
		m := s / float64(c)
		var q float64
		for _, v := range xr {
			d := float64(v) - m
			q += d * d
		}
		rs := 1 / math.Sqrt(q/float64(c)+eps)
		mT, rT := T(m), T(rs)
		for j, v := range xr {
			n := (v - mT) * rT
			if w != nil {
				n *= w[j]
			}
			if b != nil {
				n += b[j]
			}
			yr[j] = n
		}
		mean[r], rstd[r] = mT, rT
	}
}

// layerNormBwd accumulates dx, dw, db (dw/db may be nil):
// dx = rstd·(dn − mean(dn) − n·mean(dn∘n)) with n the normalised x, dn = dy∘w.
func layerNormBwd[T float](rows, c int, x, w, mean, rstd, dy, dx, dw, db []T) {
	for r := 0; r < rows; r++ {
		xr, gr := x[r*c:(r+1)*c], dy[r*c:(r+1)*c]
		m, rs := mean[r], rstd[r]
		var sdn, sdnn float64
		for j, v := range xr {
			n := (v - m) * rs
			dn := gr[j]
			if w != nil {
				dn *= w[j]
			}
			sdn += float64(dn)
			sdnn += float64(dn * n)
		}
		mdn, mdnn := T(sdn/float64(c)), T(sdnn/float64(c))
		for j, v := range xr {
			n := (v - m) * rs
			dn := gr[j]
			if w != nil {
				dn *= w[j]
			}
			if dx != nil {
				dx[r*c+j] += rs * (dn - mdn - n*mdnn)
			}
			if dw != nil {
				dw[j] += gr[j] * n
			}
			if db != nil {
				db[j] += gr[j]
			}
		}
	}
}

func rmsNormFwd[T float](rows, c int, x, w, y, rstd []T, eps float64) {
	for r := 0; r < rows; r++ {
		xr, yr := x[r*c:(r+1)*c], y[r*c:(r+1)*c]
		var q float64
		for _, v := range xr {
			q += float64(v) * float64(v)
		}
		rs := T(1 / math.Sqrt(q/float64(c)+eps))
		for j, v := range xr {
			n := v * rs
			if w != nil {
				n *= w[j]
			}
			yr[j] = n
		}
		rstd[r] = rs
	}
}

// rmsNormBwd: dx = rstd·(dn − n·mean(dn∘n)), dw += dy∘n.
func rmsNormBwd[T float](rows, c int, x, w, rstd, dy, dx, dw []T) {
	for r := 0; r < rows; r++ {
		xr, gr := x[r*c:(r+1)*c], dy[r*c:(r+1)*c]
		rs := rstd[r]
		var sdnn float64
		for j, v := range xr {
			dn := gr[j]
			if w != nil {
				dn *= w[j]
			}
			sdnn += float64(dn * v * rs)
		}
		mdnn := T(sdnn / float64(c))
		for j, v := range xr {
			n := v * rs
			dn := gr[j]
			if w != nil {
				dn *= w[j]
			}
			if dx != nil {
				dx[r*c+j] += rs * (dn - n*mdnn)
			}
			if dw != nil {
				dw[j] += gr[j] * n
			}
		}
	}
}

func dataOrNil(t *Tensor) []float32 {
	if t == nil {
		return nil
	}
	return t.Data
}

func gradOrNil(t *Tensor) []float32 {
	if !wants(t) {
		return nil
	}
	return t.gradBuf()
}

func checkAffine(op string, x, p *Tensor, c int) {
	if p != nil && p.Size() != c {
		panic(shapeErr(op, x.Shape, p.Shape, "affine parameter must have %d values (the last dimension)", c))
	}
}

// LayerNorm normalises the last dimension to zero mean and unit variance,
// then applies w (scale) and b (shift); w and b are [C] or nil.
func (tp *Tape) LayerNorm(x, w, b *Tensor, eps float32) *Tensor {
	rows, c := lastDim("LayerNorm", x)
	checkAffine("LayerNorm", x, w, c)
	checkAffine("LayerNorm", x, b, c)
	out := Zeros(x.Shape...)
	mean, rstd := make([]float32, rows), make([]float32, rows)
	parallelRows(rows, c, func(r0, r1 int) {
		layerNormFwd(r1-r0, c, x.Data[r0*c:r1*c], dataOrNil(w), dataOrNil(b), out.Data[r0*c:r1*c], mean[r0:r1], rstd[r0:r1], float64(eps))
	})
	tp.record("LayerNorm", out, func() {
		dx := gradOrNil(x)
		rowParallelParamGrads(rows, c, []*Tensor{w, b}, func(r0, r1 int, pg [][]float32) {
			var dxr []float32
			if dx != nil {
				dxr = dx[r0*c : r1*c]
			}
			layerNormBwd(r1-r0, c, x.Data[r0*c:r1*c], dataOrNil(w), mean[r0:r1], rstd[r0:r1], out.Grad[r0*c:r1*c], dxr, pg[0], pg[1])
		})
	}, x, w, b)
	return out
}

// RMSNorm scales the last dimension by 1/√(mean(x²)+eps), then by w ([C] or nil).
func (tp *Tape) RMSNorm(x, w *Tensor, eps float32) *Tensor {
	rows, c := lastDim("RMSNorm", x)
	checkAffine("RMSNorm", x, w, c)
	out := Zeros(x.Shape...)
	rstd := make([]float32, rows)
	parallelRows(rows, c, func(r0, r1 int) {
		rmsNormFwd(r1-r0, c, x.Data[r0*c:r1*c], dataOrNil(w), out.Data[r0*c:r1*c], rstd[r0:r1], float64(eps))
	})
	tp.record("RMSNorm", out, func() {
		dx := gradOrNil(x)
		rowParallelParamGrads(rows, c, []*Tensor{w}, func(r0, r1 int, pg [][]float32) {
			var dxr []float32
			if dx != nil {
				dxr = dx[r0*c : r1*c]
			}
			rmsNormBwd(r1-r0, c, x.Data[r0*c:r1*c], dataOrNil(w), rstd[r0:r1], out.Grad[r0*c:r1*c], dxr, pg[0])
		})
	}, x, w)
	return out
}

// rowParallelParamGrads runs a row-wise backward in parallel over row
// ranges. Each range accumulates the gradients of the shared parameters
// params (nil entries, or ones that need no gradient, get nil) into private
// buffers that are added to the parameters' Grad at the end, in range order.
func rowParallelParamGrads(rows, c int, params []*Tensor, body func(r0, r1 int, pg [][]float32)) {
	const grain = 16 << 10
	parts := min(MaxThreads(), rows, max(1, rows*c/grain))
	if parts <= 1 {
		pg := make([][]float32, len(params))
		for i, p := range params {
			pg[i] = gradOrNil(p)
		}
		body(0, rows, pg)
		return
	}
	priv := make([][][]float32, parts)
	parallelFor(parts, func(_, part int) {
		pg := make([][]float32, len(params))
		for i, p := range params {
			if wants(p) {
				pg[i] = make([]float32, p.Size())
			}
		}
		priv[part] = pg
		body(part*rows/parts, (part+1)*rows/parts, pg)
	})
	for i, p := range params {
		if !wants(p) {
			continue
		}
		g := p.gradBuf()
		for _, pg := range priv {
			for j, v := range pg[i] {
				g[j] += v
			}
		}
	}
}
