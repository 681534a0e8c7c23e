package kernels

import "math"

// attnDenseRef is the reference of the attention primitives: dense,
// materialised scores in float64 (layout as AttnBlockForward). It returns
// o [nq, h, d] and lse [nq, h].
func attnDenseRef(q, k, v []float64, nq, nk, h, d int, scale float64, m *AttnMask) (o, lse []float64) {
	hd := h * d
	o, lse = make([]float64, nq*hd), make([]float64, nq*h)
	s := make([]float64, nk)
	for hh := 0; hh < h; hh++ {
		for i := 0; i < nq; i++ {
			mx := math.Inf(-1)
			for j := 0; j < nk; j++ {
				s[j] = math.Inf(-1)
				if m.allowed(i, j) {
					var dot float64
					for c := 0; c < d; c++ {
						dot += q[i*hd+hh*d+c] * k[j*hd+hh*d+c]
					}
					s[j] = scale * dot
				}
				mx = math.Max(mx, s[j])
			}
			if math.IsInf(mx, -1) {
				lse[i*h+hh] = mx
				continue
			}
			var l float64
			for j := range s {
				s[j] = math.Exp(s[j] - mx)
				l += s[j]
			}
			for j := range s {
				for c := 0; c < d; c++ {
					o[i*hd+hh*d+c] += s[j] / l * v[j*hd+hh*d+c]
				}
			}
			lse[i*h+hh] = mx + math.Log(l)
		}
	}
	return o, lse
}

// attnDenseRefBwd returns dq, dk, dv of the dense reference for upstream do
// (the textbook softmax Jacobian, no delta trick).
func attnDenseRefBwd(q, k, v, do []float64, nq, nk, h, d int, scale float64, m *AttnMask) (dq, dk, dv []float64) {
	hd := h * d
	dq, dk, dv = make([]float64, nq*hd), make([]float64, nk*hd), make([]float64, nk*hd)
	_, lse := attnDenseRef(q, k, v, nq, nk, h, d, scale, m)
	p, dp := make([]float64, nk), make([]float64, nk)
	for hh := 0; hh < h; hh++ {
		for i := 0; i < nq; i++ {
			if math.IsInf(lse[i*h+hh], -1) {
				continue
			}
			var sum float64
			for j := 0; j < nk; j++ {
				p[j], dp[j] = 0, 0
				if !m.allowed(i, j) {
					continue
				}
				var dot float64
				for c := 0; c < d; c++ {
					dot += q[i*hd+hh*d+c] * k[j*hd+hh*d+c]
				}
				p[j] = math.Exp(scale*dot - lse[i*h+hh])
				for c := 0; c < d; c++ {
					dp[j] += do[i*hd+hh*d+c] * v[j*hd+hh*d+c]
				}
				sum += p[j] * dp[j]
			}
			for j := 0; j < nk; j++ {
				if p[j] == 0 {
					continue
				}
				ds := p[j] * (dp[j] - sum)
				for c := 0; c < d; c++ {
					dv[j*hd+hh*d+c] += p[j] * do[i*hd+hh*d+c]
					dq[i*hd+hh*d+c] += scale * ds * k[j*hd+hh*d+c]
					dk[j*hd+hh*d+c] += scale * ds * q[i*hd+hh*d+c]
				}
			}
		}
	}
	return dq, dk, dv
}
