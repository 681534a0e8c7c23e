package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestExpf(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	worst := 0.0
	check := func(x float32) {
		got := float64(expf(x))
		want := math.Exp(float64(x))
		if x < -87 {
			if got != 0 {
				t.Fatalf("expf(%g) = %g, want 0 (flushed)", x, got)
			}
			return
		}
		if want > math.MaxFloat32 {
			if !math.IsInf(got, 1) {
				t.Fatalf("expf(%g) = %g, want +Inf", x, got)
			}
			return
		}
		rel := math.Abs(got-want) / want
		worst = max(worst, rel)
		if rel > 3e-7 {
			t.Fatalf("expf(%g) = %.9g, want %.9g (rel err %.3g)", x, got, want, rel)
		}
	}
	for _, x := range []float32{0, 1, -1, 0.5, -0.5, 88, 88.7, 88.72, 88.73, -86.9, -87, -87.1, -100, float32(math.Inf(-1)), 1e-8} {
		check(x)
	}
	for i := 0; i < 200000; i++ {
		check(float32(rng.Float64()*180 - 90))
	}
	t.Logf("worst relative error %.3g", worst)
}

// TestRowKernels checks the AVX2 row kernels against the pure-Go loops on
// every length 0..40 (all remainders of 8) and extreme values.
func TestRowKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	ninf := float32(math.Inf(-1))
	for n := 0; n <= 40; n++ {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.Float64()*190 - 100)
			if i%7 == 3 {
				x[i] = ninf
			}
		}
		m := float32(rng.Float64()*4 - 2)
		want := append([]float32{}, x...)
		wantSum := expSubRowGo(want, m)
		got := append([]float32{}, x...)
		gotSum := expSubRow(got, m)
		for i := range want {
			if x[i]-m > 88.37 {
				continue // the vector kernel saturates here; attention and softmax never exceed 0
			}
			if d := math.Abs(float64(got[i] - want[i])); d > 4e-7*float64(want[i]) {
				t.Fatalf("expSubRow(n=%d)[%d] at x−m=%g: %g, pure Go %g", n, i, x[i]-m, got[i], want[i])
			}
		}
		if n > 0 && max(wantSum, gotSum) < 1e30 && math.Abs(float64(gotSum-wantSum)) > 1e-6*float64(wantSum) {
			t.Fatalf("expSubRow(n=%d) sum %g, pure Go %g", n, gotSum, wantSum)
		}
		wm := ninf
		for _, v := range x {
			wm = max(wm, v)
		}
		if gm := rowMax(x, ninf); gm != wm {
			t.Fatalf("rowMax(n=%d) = %g, want %g", n, gm, wm)
		}
		p, dp := append([]float32{}, x...), make([]float32, n)
		wdp := make([]float32, n)
		for i := range p {
			p[i] = float32(rng.Float64())
			dp[i] = float32(rng.NormFloat64())
			wdp[i] = p[i] * (dp[i] - 0.3)
		}
		dsRow(p, dp, 0.3)
		for i := range dp {
			if dp[i] != wdp[i] {
				t.Fatalf("dsRow(n=%d)[%d] = %g, want %g", n, i, dp[i], wdp[i])
			}
		}
	}
}

// TestUnaryFast32 compares the float32 activation path (the AVX2 GELU
// kernels where available) with the float64 reference over a wide range,
// including saturated tails, on lengths that leave every remainder of 8.
func TestUnaryFast32(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, k := range []unaryKind{unGELU, unSiLU, unSigmoid, unGELUErf} {
		for _, n := range []int{1, 7, 8, 9, 64, 1001, 3000} {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(rng.NormFloat64() * 4)
			}
			x[0] = []float32{-60, 60, 0, 1e-4, -9.5, 9.5}[n%6]
			y, dx, dy := make([]float32, n), make([]float32, n), make([]float32, n)
			for i := range dy {
				dy[i] = float32(rng.NormFloat64())
			}
			unaryFwd32(k, x, y)
			unaryBwd32(k, x, dy, dx)
			for i, v := range x {
				wy, wd := unaryRef(k, float64(v))
				wd *= float64(dy[i])
				if math.Abs(float64(y[i])-wy) > 2e-6*(1+math.Abs(wy)) {
					t.Fatalf("%s(%g) = %.9g, want %.9g", unaryNames[k], v, y[i], wy)
				}
				if math.Abs(float64(dx[i])-wd) > 2e-6*(1+math.Abs(wd)) {
					t.Fatalf("%s'(%g)·%g = %.9g, want %.9g", unaryNames[k], v, dy[i], dx[i], wd)
				}
			}
		}
	}
}
