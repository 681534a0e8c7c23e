package kernels

import "github.com/loomtrain/loom/kernels/internal/gemm"

// sgemm is the float32 GEMM of the training path. It is the one place where
// kernels reaches the BLAS-like backend (package kernels/internal/gemm);
// gemmNaive is its reference.
func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 { // an empty sum (e.g. a Linear with 0 inputs): C = beta·C; leading dimensions may be 0
		for i := 0; i < m; i++ {
			row := c[i*ldc : i*ldc+n]
			for j := range row {
				if beta == 0 {
					row[j] = 0
				} else {
					row[j] *= beta
				}
			}
		}
		return
	}
	gemm.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major float32
// matrices (op(X) = Xᵀ when transX): op(A) is m×k, op(B) k×n, C m×n, with
// row strides lda, ldb, ldc. It is the GEMM every op uses, exported for
// benchmarks and for callers that manage their own buffers.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
