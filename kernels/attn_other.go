//go:build !amd64 || noasm

package kernels

// Without the AVX-512 attention micro-kernels, attention runs its tiles
// through sgemm.

const haveAttnMicro = false

func attnMicroN(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha float32, accum int) {
	panic("kernels: no attention micro-kernels in this build")
}

func attnMicroT(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha float32, accum int) {
	panic("kernels: no attention micro-kernels in this build")
}

func expSubAVX512(x *float32, n int, m float32) float32 {
	panic("kernels: no AVX-512 kernels in this build")
}

func geluAVX512(x, y *float32, n int) { panic("kernels: no AVX-512 kernels in this build") }

func geluBwdAVX512(x, dy, dx *float32, n, acc int) {
	panic("kernels: no AVX-512 kernels in this build")
}
