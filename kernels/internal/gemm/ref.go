package gemm

// SgemmRef computes C = alpha·op(A)·op(B) + beta·C with the naive triple loop,
// accumulating each dot product in float64. It takes the same arguments as Sgemm and
// checks them the same way. It is the reference every fast path is tested against;
// Like Sgemm, it reads neither A nor B when alpha == 0, and does not read C when
// beta == 0. It is slow (a few GFLOP/s at best) and single-threaded.
func SgemmRef(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkArgs(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var sum float64
			for p := 0; p < k && alpha != 0; p++ {
				var av, bv float32
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
				sum += float64(av) * float64(bv)
			}
			v := float64(alpha) * sum
			if beta != 0 {
				v += float64(beta) * float64(c[i*ldc+j])
			}
			c[i*ldc+j] = float32(v)
		}
	}
}
