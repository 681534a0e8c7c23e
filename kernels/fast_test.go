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
