package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// attnMicroRef is the reference of the attention micro-kernels.
func attnMicroRef(trans bool, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, alpha float32, accum bool) {
	for i := 0; i < 6; i++ {
		for j := 0; j < 64; j++ {
			var s float64
			for p := 0; p < k; p++ {
				av := a[i*lda+p]
				if trans {
					av = a[p*lda+i]
				}
				s += float64(av) * float64(b[p*ldb+j])
			}
			v := float32(s) * alpha
			if accum {
				v += c[i*ldc+j]
			}
			c[i*ldc+j] = v
		}
	}
}

func TestAttnMicro(t *testing.T) {
	if !haveAttnMicro {
		t.Skip("no AVX-512 attention micro-kernels on this CPU/build")
	}
	rng := rand.New(rand.NewPCG(31, 32))
	for _, trans := range []bool{false, true} {
		for _, k := range []int{0, 1, 7, 64, 130} {
			for _, accum := range []bool{false, true} {
				lda, ldb, ldc := k+3, 70, 75
				if trans {
					lda = 9
				}
				a := make([]float32, 6*lda+k*lda+8)
				b := make([]float32, k*ldb+64)
				c := make([]float32, 6*ldc)
				for i := range a {
					a[i] = float32(rng.NormFloat64())
				}
				for i := range b {
					b[i] = float32(rng.NormFloat64())
				}
				for i := range c {
					c[i] = float32(rng.NormFloat64())
				}
				want := append([]float32{}, c...)
				attnMicroRef(trans, k, a, lda, b, ldb, want, ldc, 0.5, accum)
				acc := 0
				if accum {
					acc = 1
				}
				var ap, bp *float32 = &a[0], nil
				if len(b) > 0 {
					bp = &b[0]
				}
				if trans {
					attnMicroT(k, ap, lda, bp, ldb, &c[0], ldc, 0.5, acc)
				} else {
					attnMicroN(k, ap, lda, bp, ldb, &c[0], ldc, 0.5, acc)
				}
				for i := 0; i < 6; i++ {
					for j := 0; j < ldc; j++ {
						g, w := c[i*ldc+j], want[i*ldc+j]
						if math.Abs(float64(g-w)) > 1e-4*(1+math.Abs(float64(w))) {
							t.Fatalf("attnMicro(trans=%v, k=%d, accum=%v)[%d][%d] = %g, want %g", trans, k, accum, i, j, g, w)
						}
					}
				}
			}
		}
	}
}
