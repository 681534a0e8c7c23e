package gemm

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

// maxThreads is the SetMaxThreads setting; 0 means runtime.GOMAXPROCS(0).
var maxThreads atomic.Int64

// SetMaxThreads sets how many goroutines one Sgemm call may use. n <= 0 restores the
// default, runtime.GOMAXPROCS(0) read at each call. It is safe to call concurrently
// with Sgemm; calls already running keep the value they started with.
func SetMaxThreads(n int) {
	if n < 0 {
		n = 0
	}
	maxThreads.Store(int64(n))
}

// MaxThreads reports how many goroutines one Sgemm call may use.
func MaxThreads() int {
	if n := maxThreads.Load(); n > 0 {
		return int(n)
	}
	return runtime.GOMAXPROCS(0)
}

// Kernel reports which micro-kernel Sgemm runs on this CPU: "avx512", "avx2" or "go".
func Kernel() string { return active.name }

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major float32 matrices, where
// op(X) = Xᵀ when transX is true.
//
// op(A) is m×k, op(B) is k×n and C is m×n. lda, ldb and ldc are the row strides of A,
// B and C as stored: A is m×k (k×m when transA) with lda >= its column count, and so
// on. When beta == 0, C is not read, so it may hold garbage or NaN. When alpha == 0 or
// k == 0, A and B are not read. C must not overlap A or B.
//
// Sgemm runs on up to MaxThreads() goroutines and returns when all are done. It panics
// with a message naming the argument if a size is negative, a leading dimension is
// smaller than its row, or a slice is too short for its shape.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkArgs(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	p := problem{
		transA: transA, transB: transB,
		m: m, n: n, k: k,
		alpha: alpha, beta: beta,
		a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc,
	}
	threads := 1
	if m*n*k >= 2*minWorkPerThread {
		threads = MaxThreads() // takes a runtime lock: only when it can matter
	}
	run(active, &p, threads)
}

// run computes the checked problem p with kernel kern on up to threads goroutines.
func run(kern *kernel, p *problem, threads int) {
	if p.m == 0 || p.n == 0 {
		return
	}
	if p.alpha == 0 || p.k == 0 {
		scaleC(p.m, p.n, p.beta, p.c, p.ldc)
		return
	}
	if threads <= 1 || p.m*p.n*p.k < 2*minWorkPerThread {
		compute(kern, p, region{0, p.m, 0, p.n})
		return
	}
	regions := split(kern, p.m, p.n, p.k, threads)
	var wg sync.WaitGroup
	for _, r := range regions[1:] {
		wg.Add(1)
		// p is passed by value so that it does not escape: the single-threaded path
		// above then allocates nothing.
		go func(p problem, r region) {
			defer wg.Done()
			compute(kern, &p, r)
		}(*p, r)
	}
	compute(kern, p, regions[0])
	wg.Wait()
}

// problem holds one Sgemm call's arguments.
type problem struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a              []float32
	lda            int
	b              []float32
	ldb            int
	c              []float32
	ldc            int
}

// scaleC sets C = beta·C, writing zeros without reading C when beta == 0.
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
	}
}

// checkArgs panics if the arguments cannot describe the matrices they claim to.
func checkArgs(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("gemm: negative size m=%d n=%d k=%d", m, n, k))
	}
	// A is stored rowsA×colsA, B rowsB×colsB.
	rowsA, colsA := m, k
	if transA {
		rowsA, colsA = k, m
	}
	rowsB, colsB := k, n
	if transB {
		rowsB, colsB = n, k
	}
	checkMatrix("A", transA, rowsA, colsA, a, lda)
	checkMatrix("B", transB, rowsB, colsB, b, ldb)
	checkMatrix("C", false, m, n, c, ldc)
}

func checkMatrix(name string, trans bool, rows, cols int, x []float32, ld int) {
	if ld < max(1, cols) {
		panic(fmt.Sprintf("gemm: %s: leading dimension ld%s=%d is less than its %d columns", describe(name, trans, rows, cols), strings.ToLower(name), ld, cols))
	}
	if rows == 0 || cols == 0 {
		return
	}
	if need := (rows-1)*ld + cols; len(x) < need {
		panic(fmt.Sprintf("gemm: %s: slice has %d elements, want at least %d with ld%s=%d", describe(name, trans, rows, cols), len(x), need, strings.ToLower(name), ld))
	}
}

// describe names a matrix argument and its stored shape for panic messages.
func describe(name string, trans bool, rows, cols int) string {
	s := fmt.Sprintf("%s (%d×%d as stored", name, rows, cols)
	if trans {
		s += ", transposed"
	}
	return s + ")"
}

// Transpose writes the transpose of the rows×cols matrix src (row stride
// ld) into dst with row stride w >= rows, zeroing dst columns rows..w-1:
// dst[c*w+r] = src[r*ld+c]. It runs the packers' 16×16 AVX-512 (or 8×8
// AVX2) register transposes where the CPU has them. It panics when dst or
// src is too short.
func Transpose(dst, src []float32, ld, rows, cols, w int) {
	if rows < 0 || cols < 0 || w < rows || (rows > 0 && ld < cols) {
		panic(fmt.Sprintf("gemm: Transpose: rows %d, cols %d, ld %d, w %d", rows, cols, ld, w))
	}
	transposeRows(dst, src, ld, rows, cols, w)
}
