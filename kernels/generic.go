package kernels

// float is the element type of the generic kernels: float32 is the training
// path, float64 the reference path that the finite-difference tests run.
type float interface{ ~float32 | ~float64 }

// gemmFn is a row-major GEMM: C = alpha·op(A)·op(B) + beta·C, where op(A) is
// m×k and op(B) is k×n, with leading dimensions lda, ldb, ldc.
type gemmFn[T float] func(transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int)

// gemmNaive is the triple-loop reference GEMM, used for float64 and as the
// oracle of the fast path. It is exact in the order it sums.
func gemmNaive[T float](transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s T
			for p := 0; p < k; p++ {
				var av, bv T
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += av * bv
			}
			if beta == 0 {
				c[i*ldc+j] = alpha * s
			} else {
				c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
			}
		}
	}
}
