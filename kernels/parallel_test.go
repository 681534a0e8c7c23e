package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestParallelMatchesSerial runs ops whose float32 paths split work across
// goroutines on shapes large enough to split, with 1 and 4 threads, and
// requires the same outputs and gradients (up to summation order).
func TestParallelMatchesSerial(t *testing.T) {
	defer SetMaxThreads(0)
	run := func(threads int) (outs [][]float32) {
		SetMaxThreads(threads)
		rng := rand.New(rand.NewPCG(21, 22))
		x := Zeros(64, 40, 48).InitNormal(rng, 2).SetRequiresGrad(true) // 122880 values
		w := NewParam("w", 48).InitNormal(rng, 1)
		b := NewParam("b", 48).InitNormal(rng, 1)
		tgt := make([]int32, 64*40)
		for i := range tgt {
			tgt[i] = int32(rng.IntN(48))
		}
		tp := NewTape()
		h := tp.LayerNorm(x, w, b, 1e-5)
		h = tp.GELU(tp.Add(h, tp.RMSNorm(x, w, 1e-6)))
		h = tp.Add(h, tp.Softmax(h))
		loss := tp.CrossEntropy(h, tgt, CEOptions{LabelSmoothing: 0.1})
		tp.Backward(loss)
		return [][]float32{loss.Data, x.Grad, w.Grad, b.Grad}
	}
	serial, par := run(1), run(4)
	for i := range serial {
		for j := range serial[i] {
			a, b := float64(serial[i][j]), float64(par[i][j])
			if math.Abs(a-b) > 1e-6*(1+math.Abs(a)) {
				t.Fatalf("output %d element %d: 1 thread %g, 4 threads %g", i, j, a, b)
			}
		}
	}
}
