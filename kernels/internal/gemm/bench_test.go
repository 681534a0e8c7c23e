package gemm

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchShapes are the model's matmuls (m×n×k) plus square sizes.
var benchShapes = [][3]int{
	{256, 256, 256}, {1024, 1024, 1024},
	{196, 768, 768},   // ViT-B/16 attention projection, one image
	{1024, 3072, 768}, // MLP up
	{1024, 768, 3072}, // MLP down
	{256, 256, 1024},
}

func randSlice(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// BenchmarkSgemm times every kernel on the model's shapes, NN and NT, single-threaded
// and on all threads, reporting GFLOP/s.
func BenchmarkSgemm(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, kern := range available() {
		for _, s := range benchShapes {
			m, n, k := s[0], s[1], s[2]
			x, y, c := randSlice(rng, m*k), randSlice(rng, k*n), make([]float32, m*n)
			for _, transB := range []bool{false, true} {
				ldb := n
				if transB {
					ldb = k
				}
				for _, threads := range []int{1, MaxThreads()} {
					name := fmt.Sprintf("kernel=%s/%dx%dx%d/transB=%v/threads=%d", kern.name, m, n, k, transB, threads)
					b.Run(name, func(b *testing.B) {
						p := &problem{transB: transB, m: m, n: n, k: k, alpha: 1, a: x, lda: k, b: y, ldb: ldb, c: c, ldc: n}
						for b.Loop() {
							run(kern, p, threads)
						}
						b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
					})
				}
			}
		}
	}
}

// BenchmarkMicro times each micro-kernel alone on L1-resident panels (kc = 256): the
// ceiling the driver can reach.
func BenchmarkMicro(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	const kc = 256
	for _, kern := range available() {
		a := randSlice(rng, kern.mr*kc)
		bp := randSlice(rng, kc*kern.nr)
		c := make([]float32, kern.mr*kern.nr)
		b.Run("kernel="+kern.name, func(b *testing.B) {
			for b.Loop() {
				kern.micro(kc, &a[0], &bp[0], &c[0], kern.nr, 1, 0)
			}
			b.ReportMetric(2*float64(kern.mr*kern.nr*kc)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkSgemmSmall times the per-call overhead on the blockwise-attention and
// small-model shapes, through the public entry point.
func BenchmarkSgemmSmall(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 3))
	for _, s := range [][3]int{{8, 8, 8}, {64, 64, 64}, {64, 128, 64}, {128, 64, 128}} {
		m, n, k := s[0], s[1], s[2]
		x, y, c := randSlice(rng, m*k), randSlice(rng, k*n), make([]float32, m*n)
		b.Run(fmt.Sprintf("%dx%dx%d/NT", m, n, k), func(b *testing.B) {
			for b.Loop() {
				Sgemm(false, true, m, n, k, 1, x, k, y, k, 0, c, n)
			}
			b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
