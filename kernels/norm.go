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
	layerNormFwd(rows, c, x.Data, dataOrNil(w), dataOrNil(b), out.Data, mean, rstd, float64(eps))
	tp.record("LayerNorm", out, func() {
		layerNormBwd(rows, c, x.Data, dataOrNil(w), mean, rstd, out.Grad, gradOrNil(x), gradOrNil(w), gradOrNil(b))
	}, x, w, b)
	return out
}

// RMSNorm scales the last dimension by 1/√(mean(x²)+eps), then by w ([C] or nil).
func (tp *Tape) RMSNorm(x, w *Tensor, eps float32) *Tensor {
	rows, c := lastDim("RMSNorm", x)
	checkAffine("RMSNorm", x, w, c)
	out := Zeros(x.Shape...)
	rstd := make([]float32, rows)
	rmsNormFwd(rows, c, x.Data, dataOrNil(w), out.Data, rstd, float64(eps))
	tp.record("RMSNorm", out, func() {
		rmsNormBwd(rows, c, x.Data, dataOrNil(w), rstd, out.Grad, gradOrNil(x), gradOrNil(w))
	}, x, w)
	return out
}
