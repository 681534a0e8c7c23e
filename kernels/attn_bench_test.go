package kernels

import (
	"math/rand/v2"
	"testing"
)

func benchAttnBufs(s, h, d int) (q, k, v, do, o, lse, delta, dq, dk, dv []float32) {
	rng := rand.New(rand.NewPCG(1, 1))
	q, _ = randSlice(rng, s*h*d)
	k, _ = randSlice(rng, s*h*d)
	v, _ = randSlice(rng, s*h*d)
	do, _ = randSlice(rng, s*h*d)
	return q, k, v, do, make([]float32, s*h*d), make([]float32, s*h), make([]float32, s*h),
		make([]float32, s*h*d), make([]float32, s*h*d), make([]float32, s*h*d)
}

func BenchmarkAttnForward1024(b *testing.B) {
	s, h, d := 4096, 4, 64
	q, k, v, _, o, lse, _, _, _, _ := benchAttnBufs(s, h, d)
	b.SetBytes(int64(4 * s * s * h * d)) // "bytes" = FLOPs, so MB/s reads as MFLOP/s
	for i := 0; i < b.N; i++ {
		AttnBlockForward(q, k, v, s, s, h, d, 0.125, nil, o, lse)
	}
}

func BenchmarkAttnBackward1024(b *testing.B) {
	s, h, d := 4096, 4, 64
	q, k, v, do, o, lse, delta, dq, dk, dv := benchAttnBufs(s, h, d)
	AttnBlockForward(q, k, v, s, s, h, d, 0.125, nil, o, lse)
	AttnDelta(o, do, s, h, d, delta)
	b.SetBytes(int64(10 * s * s * h * d))
	for i := 0; i < b.N; i++ {
		AttnBlockBackward(q, k, v, do, lse, delta, s, s, h, d, 0.125, nil, dq, dk, dv)
	}
}

func BenchmarkSgemm1024(b *testing.B) {
	n := 1024
	a, bb, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	b.SetBytes(int64(2 * n * n * n))
	for i := 0; i < b.N; i++ {
		sgemm(false, false, n, n, n, 1, a, n, bb, n, 0, c, n)
	}
}
