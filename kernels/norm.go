package kernels

import "math"

// ---------------------------------------------------------------------------
// LayerNorm and RMSNorm over the last dimension (C).
// x, y are [rows, C]; w, b are [C] (either may be nil: no affine part);
// mean and rstd are [rows], saved by forward for backward.
// ---------------------------------------------------------------------------

func layerNormFwd[T float](rows, c int, x, w, b, y, mean, rstd []T, eps float64) {
	if x32, ok := any(x).([]float32); ok {
		layerNormFwd32(rows, c, x32, any(w).([]float32), any(b).([]float32), any(y).([]float32), any(mean).([]float32), any(rstd).([]float32), float32(eps))
		return
	}
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
	if x32, ok := any(x).([]float32); ok {
		layerNormBwd32(rows, c, x32, any(w).([]float32), any(mean).([]float32), any(rstd).([]float32), any(dy).([]float32),
			any(dx).([]float32), any(dw).([]float32), any(db).([]float32))
		return
	}
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
	if x32, ok := any(x).([]float32); ok {
		rmsNormFwd32(rows, c, x32, any(w).([]float32), any(y).([]float32), any(rstd).([]float32), float32(eps))
		return
	}
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
	if x32, ok := any(x).([]float32); ok {
		rmsNormBwd32(rows, c, x32, any(w).([]float32), any(rstd).([]float32), any(dy).([]float32), any(dx).([]float32), any(dw).([]float32))
		return
	}
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
	if x.d != nil || (w != nil && w.d != nil) || (b != nil && b.d != nil) {
		return tp.normDev("LayerNorm", false, x, w, b, eps, rows, c)
	}
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
	if x.d != nil || (w != nil && w.d != nil) {
		return tp.normDev("RMSNorm", true, x, w, nil, eps, rows, c)
	}
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
			addTo(g[:len(pg[i])], pg[i])
		}
	}
}

// sum32 adds x with four float32 accumulators (pairwise enough for rows
// of a few thousand values; the float64 path is the reference).
func sum32(x []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+3 < len(x); i += 4 {
		s0 += x[i]
		s1 += x[i+1]
		s2 += x[i+2]
		s3 += x[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// layerNormFwd32 is layerNormFwd for float32 (two passes: mean, then the
// centred variance, so no cancellation). With both affine parameters the
// last pass, y = (x − m)·rs·w + b, runs on the AVX2 row kernel, which
// repeats the Go loop's operations in order (no fused multiply-add), so
// the two paths agree bit for bit; the statistics stay in Go, whose
// accumulation order the models' and trainer's tests are tuned to.
func layerNormFwd32(rows, c int, x, w, b, y, mean, rstd []float32, eps float32) {
	if !haveAVX2 || c < 8 || w == nil || b == nil {
		layerNormFwd32Go(rows, c, x, w, b, y, mean, rstd, eps)
		return
	}
	w, b = w[:c], b[:c]
	n8 := c &^ 7
	for r := 0; r < rows; r++ {
		xr, yr := x[r*c:(r+1)*c], y[r*c:(r+1)*c]
		m, rs := layerNormStats32(xr, eps)
		lnFwdApplyAVX2(&xr[0], &w[0], &b[0], &yr[0], n8, m, rs)
		for j := n8; j < c; j++ {
			yr[j] = (xr[j]-m)*rs*w[j] + b[j]
		}
		mean[r], rstd[r] = m, rs
	}
}

// layerNormStats32 returns the mean and 1/√(variance + eps) of one row.
func layerNormStats32(xr []float32, eps float32) (m, rs float32) {
	m = sum32(xr) / float32(len(xr))
	var q0, q1 float32
	j := 0
	for ; j+1 < len(xr); j += 2 {
		d0, d1 := xr[j]-m, xr[j+1]-m
		q0 += d0 * d0
		q1 += d1 * d1
	}
	if j < len(xr) {
		d := xr[j] - m
		q0 += d * d
	}
	return m, float32(1 / math.Sqrt(float64((q0+q1)/float32(len(xr))+eps)))
}

// layerNormFwd32Go is the pure-Go layerNormFwd32 (w and b may be nil), the
// reference of the AVX2 path.
func layerNormFwd32Go(rows, c int, x, w, b, y, mean, rstd []float32, eps float32) {
	for r := 0; r < rows; r++ {
		xr, yr := x[r*c:(r+1)*c], y[r*c:(r+1)*c]
		m, rs := layerNormStats32(xr, eps)
		switch {
		case w != nil && b != nil:
			w, b := w[:c], b[:c]
			for j, v := range xr {
				yr[j] = (v-m)*rs*w[j] + b[j]
			}
		default:
			for j, v := range xr {
				n := (v - m) * rs
				if w != nil {
					n *= w[j]
				}
				if b != nil {
					n += b[j]
				}
				yr[j] = n
			}
		}
		mean[r], rstd[r] = m, rs
	}
}

// layerNormBwd32 is layerNormBwd for float32: the AVX2 row kernels when
// the affine parameters and all three gradients are present, otherwise
// layerNormBwd32Go.
func layerNormBwd32(rows, c int, x, w, mean, rstd, dy, dx, dw, db []float32) {
	if !haveAVX2 || c < 8 || w == nil || dx == nil || dw == nil || db == nil {
		layerNormBwd32Go(rows, c, x, w, mean, rstd, dy, dx, dw, db)
		return
	}
	w, dw, db = w[:c], dw[:c], db[:c]
	n8 := c &^ 7
	for r := 0; r < rows; r++ {
		xr, gr, dxr := x[r*c:(r+1)*c], dy[r*c:(r+1)*c], dx[r*c:(r+1)*c]
		m, rs := mean[r], rstd[r]
		sdn, sdxc := lnBwdSumsAVX2(&xr[0], &gr[0], &w[0], n8, m)
		for j := n8; j < c; j++ {
			dn := gr[j] * w[j]
			sdn += dn
			sdxc += dn * (xr[j] - m)
		}
		mdn, mdnn := sdn/float32(c), sdxc*rs/float32(c)
		lnBwdApplyAVX2(&xr[0], &gr[0], &w[0], &dxr[0], &dw[0], &db[0], n8, m, rs, mdn, mdnn)
		for j := n8; j < c; j++ {
			n := (xr[j] - m) * rs
			g := gr[j]
			dxr[j] += rs * (g*w[j] - mdn - n*mdnn)
			dw[j] += g * n
			db[j] += g
		}
	}
}

// layerNormBwd32Go is the pure-Go layerNormBwd32 (any of w, dx, dw, db may
// be nil), the reference of the AVX2 path.
func layerNormBwd32Go(rows, c int, x, w, mean, rstd, dy, dx, dw, db []float32) {
	for r := 0; r < rows; r++ {
		xr, gr := x[r*c:(r+1)*c], dy[r*c:(r+1)*c]
		m, rs := mean[r], rstd[r]
		var sdn, sdnn float32
		for j, v := range xr {
			n := (v - m) * rs
			dn := gr[j]
			if w != nil {
				dn *= w[j]
			}
			sdn += dn
			sdnn += dn * n
		}
		mdn, mdnn := sdn/float32(c), sdnn/float32(c)
		for j, v := range xr {
			n := (v - m) * rs
			g := gr[j]
			dn := g
			if w != nil {
				dn *= w[j]
			}
			if dx != nil {
				dx[r*c+j] += rs * (dn - mdn - n*mdnn)
			}
			if dw != nil {
				dw[j] += g * n
			}
			if db != nil {
				db[j] += g
			}
		}
	}
}

// rmsNormFwd32 is rmsNormFwd for float32.
func rmsNormFwd32(rows, c int, x, w, y, rstd []float32, eps float32) {
	for r := 0; r < rows; r++ {
		xr, yr := x[r*c:(r+1)*c], y[r*c:(r+1)*c]
		var q0, q1 float32
		j := 0
		for ; j+1 < len(xr); j += 2 {
			q0 += xr[j] * xr[j]
			q1 += xr[j+1] * xr[j+1]
		}
		if j < len(xr) {
			q0 += xr[j] * xr[j]
		}
		rs := float32(1 / math.Sqrt(float64((q0+q1)/float32(c)+eps)))
		if w != nil {
			w := w[:c]
			for j, v := range xr {
				yr[j] = v * rs * w[j]
			}
		} else {
			for j, v := range xr {
				yr[j] = v * rs
			}
		}
		rstd[r] = rs
	}
}

// rmsNormBwd32 is rmsNormBwd for float32.
func rmsNormBwd32(rows, c int, x, w, rstd, dy, dx, dw []float32) {
	for r := 0; r < rows; r++ {
		xr, gr := x[r*c:(r+1)*c], dy[r*c:(r+1)*c]
		rs := rstd[r]
		var sdnn float32
		for j, v := range xr {
			dn := gr[j]
			if w != nil {
				dn *= w[j]
			}
			sdnn += dn * v * rs
		}
		mdnn := sdnn / float32(c)
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
