package kernels

import "math"

// unaryFwd32 and unaryBwd32 are the float32 training path of the unary
// activations. They start as the float64-evaluated reference; faster float32
// approximations replace individual kinds here, each tested against unaryRef.
func unaryFwd32(k unaryKind, x, y []float32) {
	if k == unGELUErf {
		parallelChunks(len(x), func(lo, hi int) { geluErf32(x[lo:hi], y[lo:hi], nil, nil) })
		return
	}
	if k == unSiLU || k == unSigmoid {
		parallelChunks(len(x), func(lo, hi int) { sigmoidFwd32(k == unSiLU, x[lo:hi], y[lo:hi]) })
		return
	}
	if k == unGELU && haveAVX2 {
		parallelChunks(len(x), func(lo, hi int) {
			if n16 := (hi - lo) &^ 15; haveAttnMicro && n16 > 0 {
				geluAVX512(&x[lo], &y[lo], n16)
				lo += n16
			}
			if n8 := (hi - lo) &^ 7; n8 > 0 {
				geluAVX2(&x[lo], &y[lo], n8)
				lo += n8
			}
			unaryFwd(k, x[lo:hi], y[lo:hi])
		})
		return
	}
	parallelChunks(len(x), func(lo, hi int) { unaryFwd(k, x[lo:hi], y[lo:hi]) })
}

func unaryBwd32(k unaryKind, x, dy, dx []float32) { unaryBwd32Set(k, x, dy, dx, false) }

// unaryBwd32Set is unaryBwd32 that, when set, overwrites dx (dx = dy·f'(x))
// instead of accumulating, without reading dx's old contents.
func unaryBwd32Set(k unaryKind, x, dy, dx []float32, set bool) {
	if set && !(k == unGELU && haveAVX2) {
		clear(dx[:len(x)])
	}
	if k == unGELUErf {
		parallelChunks(len(x), func(lo, hi int) { geluErf32(x[lo:hi], nil, dy[lo:hi], dx[lo:hi]) })
		return
	}
	if k == unSiLU || k == unSigmoid {
		parallelChunks(len(x), func(lo, hi int) { sigmoidBwd32(k == unSiLU, x[lo:hi], dy[lo:hi], dx[lo:hi]) })
		return
	}
	if k == unGELU && haveAVX2 {
		parallelChunks(len(x), func(lo, hi int) {
			if n8 := (hi - lo) &^ 7; n8 > 0 {
				acc := 1
				if set {
					acc = 0
				}
				if n16 := n8 &^ 15; haveAttnMicro && n16 > 0 {
					geluBwdAVX512(&x[lo], &dy[lo], &dx[lo], n16, acc)
					lo, n8 = lo+n16, n8-n16
				}
				if n8 > 0 {
					geluBwdAVX2(&x[lo], &dy[lo], &dx[lo], n8, acc)
					lo += n8
				}
			}
			if set {
				clear(dx[lo:hi])
			}
			unaryBwd(k, x[lo:hi], dy[lo:hi], dx[lo:hi])
		})
		return
	}
	parallelChunks(len(x), func(lo, hi int) { unaryBwd(k, x[lo:hi], dy[lo:hi], dx[lo:hi]) })
}

// expf is a float32 e^x with a relative error below 2e-7 (degree-6
// polynomial on [−ln2/2, ln2/2] after range reduction, Cephes expf). It
// flushes results below e^−87 to 0, so that masked or far-below-max scores
// never produce subnormals (Go cannot set FTZ/DAZ), and returns +Inf above
// e^88.72283.
func expf(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		c1    = 0.693359375
		c2    = -2.12194440e-4
	)
	if x < -87 {
		return 0
	}
	if x != x {
		return x // NaN
	}
	if x > 88.72283 {
		return float32(math.Inf(1))
	}
	fx := x*log2e + 0.5
	n := int32(fx)
	if fx < 0 && float32(n) != fx {
		n-- // floor
	}
	fn := float32(n)
	r := x - fn*c1 - fn*c2
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	y := p*r*r + r + 1
	if n > 127 { // e^x just below MaxFloat32: 2^128 itself is not a float32
		return 2 * y * math.Float32frombits(uint32(n+126)<<23)
	}
	return y * math.Float32frombits(uint32(n+127)<<23)
}

// expSubRow sets row[j] = exp(row[j] − m) and returns the sum (masked
// entries hold −Inf and become 0). Arguments above 88.37 saturate.
func expSubRow(row []float32, m float32) float32 {
	var s float32
	if n16 := len(row) &^ 15; haveAttnMicro && n16 > 0 {
		s = expSubAVX512(&row[0], n16, m)
		row = row[n16:]
	}
	if n8 := len(row) &^ 7; haveAVX2 && n8 > 0 {
		s += expSubAVX2(&row[0], n8, m)
		row = row[n8:]
	}
	return s + expSubRowGo(row, m)
}

// expSubRowGo is the pure-Go expSubRow (the fallback and the reference of
// the AVX2 kernel).
func expSubRowGo(row []float32, m float32) float32 {
	var s0, s1 float32
	j := 0
	for ; j+1 < len(row); j += 2 {
		e0 := expf(row[j] - m)
		e1 := expf(row[j+1] - m)
		row[j], row[j+1] = e0, e1
		s0 += e0
		s1 += e1
	}
	if j < len(row) {
		e := expf(row[j] - m)
		row[j] = e
		s0 += e
	}
	return s0 + s1
}

// rowMax returns max(m0, max(row)).
func rowMax(row []float32, m0 float32) float32 {
	if n8 := len(row) &^ 7; haveAVX2 && n8 > 0 {
		m0 = max(m0, maxAVX2(&row[0], n8))
		row = row[n8:]
	}
	for _, x := range row {
		m0 = max(m0, x)
	}
	return m0
}

// dsRow sets dp[j] = p[j]·(dp[j] − delta): the softmax backward of one
// attention row.
func dsRow(p, dp []float32, delta float32) {
	dp = dp[:len(p)]
	if n8 := len(p) &^ 7; haveAVX2 && n8 > 0 {
		dsAVX2(&p[0], &dp[0], n8, delta)
		p, dp = p[n8:], dp[n8:]
	}
	for j := range dp {
		dp[j] = p[j] * (dp[j] - delta)
	}
}

// negExp sets e[i] = exp(−x[i]) with the vector exp (e is scratch of len(x)).
func negExp(x, e []float32) {
	for i, v := range x {
		e[i] = -v
	}
	expSubRow(e, 0)
}

const sigChunk = 1024

// sigmoidFwd32 writes σ(x), or x·σ(x) when silu, in float32 with the
// vector exp.
func sigmoidFwd32(silu bool, x, y []float32) {
	var e [sigChunk]float32
	for lo := 0; lo < len(x); lo += sigChunk {
		xs := x[lo:min(len(x), lo+sigChunk)]
		ys, es := y[lo:lo+len(xs)], e[:len(xs)]
		negExp(xs, es)
		for i, v := range xs {
			s := 1 / (1 + es[i])
			if silu {
				s *= v
			}
			ys[i] = s
		}
	}
}

// sigmoidBwd32 accumulates dx += dy·σ'(x) (σ(1−σ)), or dy·SiLU'(x)
// (σ(1 + x(1−σ))) when silu.
func sigmoidBwd32(silu bool, x, dy, dx []float32) {
	var e [sigChunk]float32
	for lo := 0; lo < len(x); lo += sigChunk {
		xs := x[lo:min(len(x), lo+sigChunk)]
		es := e[:len(xs)]
		negExp(xs, es)
		for i, v := range xs {
			s := 1 / (1 + es[i])
			var d float32
			if silu {
				d = s * (1 + v*(1-s))
			} else {
				d = s * (1 - s)
			}
			dx[lo+i] += dy[lo+i] * d
		}
	}
}

// swigluFwd32 and swigluBwd32 are the float32 SwiGLU: out = SiLU(g)·u.
func swigluFwd32(g, u, out []float32) {
	parallelChunks(len(g), func(lo, hi int) {
		sigmoidFwd32(true, g[lo:hi], out[lo:hi])
		for i := lo; i < hi; i++ {
			out[i] *= u[i]
		}
	})
}

func swigluBwd32(g, u, dout, dg, du []float32) {
	parallelChunks(len(g), func(lo, hi int) {
		var e [sigChunk]float32
		for c := lo; c < hi; c += sigChunk {
			xs := g[c:min(hi, c+sigChunk)]
			es := e[:len(xs)]
			negExp(xs, es)
			for i, x := range xs {
				j := c + i
				s := 1 / (1 + es[i])
				if dg != nil {
					dg[j] += dout[j] * u[j] * s * (1 + x*(1-s))
				}
				if du != nil {
					du[j] += dout[j] * x * s
				}
			}
		}
	})
}

// geluErf32 is the exact GELU x·Φ(x) in float32: with e = exp(−x²/2) from
// the vector exp and z = x/√2, erfc(|z|) = poly(t)·e with t = 1/(1 + p|z|)
// (Abramowitz & Stegun 7.1.26, |error| ≤ 1.5e-7); Φ(x) = ½erfc(|z|) for
// x < 0 and 1 − ½erfc(|z|) otherwise, and the density is e/√(2π). With y != nil it writes y = x·Φ(x); with dx != nil it
// accumulates dx += dy·(Φ(x) + x·φ(x)).
func geluErf32(x, y, dy, dx []float32) {
	const (
		p  = 0.3275911
		a1 = 0.254829592
		a2 = -0.284496736
		a3 = 1.421413741
		a4 = -1.453152027
		a5 = 1.061405429
		// 1/√2 and 1/√(2π)
		invSqrt2   = 0.7071067811865476
		invSqrt2Pi = 0.3989422804014327
	)
	var e, phi [sigChunk]float32
	for lo := 0; lo < len(x); lo += sigChunk {
		xs := x[lo:min(len(x), lo+sigChunk)]
		es := e[:len(xs)]
		for i, v := range xs {
			es[i] = -0.5 * v * v
		}
		expSubRow(es, 0)
		n8 := 0
		if haveAVX2 {
			n8 = len(xs) &^ 7
		}
		if n8 > 0 {
			c := phi[:n8]
			erfCdfAVX2(&xs[0], &es[0], &c[0], n8)
			xv, ev := xs[:n8], es[:n8]
			if y != nil {
				yv := y[lo : lo+n8]
				for i, v := range xv {
					yv[i] = v * c[i]
				}
			}
			if dx != nil {
				dyv, dxv := dy[lo:lo+n8], dx[lo:lo+n8]
				for i, v := range xv {
					dxv[i] += dyv[i] * (c[i] + v*ev[i]*invSqrt2Pi)
				}
			}
		}
		for i := n8; i < len(xs); i++ {
			v := xs[i]
			z := v * invSqrt2
			az := z
			if az < 0 {
				az = -az
			}
			t := 1 / (1 + p*az)
			half := 0.5 * t * (a1 + t*(a2+t*(a3+t*(a4+t*a5)))) * es[i] // ½·erfc(|z|), no cancellation
			cdf := half
			if z >= 0 {
				cdf = 1 - half
			}
			if y != nil {
				y[lo+i] = v * cdf
			}
			if dx != nil {
				dx[lo+i] += dy[lo+i] * (cdf + v*es[i]*invSqrt2Pi)
			}
		}
	}
}

// addVec sets out[i] = a[i] + b[i] for i < len(out) (a and b at least as
// long; out may alias either), with the AVX2 kernel where there is one.
func addVec(out, a, b []float32) {
	a, b = a[:len(out)], b[:len(out)]
	if n8 := len(out) &^ 7; haveAVX2 && n8 > 0 {
		addVecAVX2(&out[0], &a[0], &b[0], n8)
		out, a, b = out[n8:], a[n8:], b[n8:]
	}
	addVecGo(out, a, b)
}

// addVecGo is the pure-Go addVec (the fallback and the reference of the
// AVX2 kernel).
func addVecGo(out, a, b []float32) {
	a, b = a[:len(out)], b[:len(out)]
	for i := range out {
		out[i] = a[i] + b[i]
	}
}

// addTo sets dst[i] += src[i] for i < len(dst).
func addTo(dst, src []float32) { addVec(dst, dst, src) }

// addRows adds the row vector v to each of the len(x)/len(v) rows of x.
func addRows(x, v []float32) {
	if len(v) == 0 {
		return
	}
	for r := 0; r+len(v) <= len(x); r += len(v) {
		addTo(x[r:r+len(v)], v)
	}
}

// sumRowsInto adds each of the len(x)/len(acc) rows of x into acc (the
// gradient of a broadcast bias).
func sumRowsInto(acc, x []float32) {
	if len(acc) == 0 {
		return
	}
	for r := 0; r+len(acc) <= len(x); r += len(acc) {
		addTo(acc, x[r:r+len(acc)])
	}
}
