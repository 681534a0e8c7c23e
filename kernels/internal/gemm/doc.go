// Package gemm is Loom's single-precision matrix multiply: C = alpha·op(A)·op(B) + beta·C
// on row-major float32 matrices, the one routine behind every matmul, linear layer,
// attention product and im2col convolution in package kernels.
//
// # Design
//
// Sgemm follows the BLIS / GotoBLAS structure (Goto and van de Geijn, "Anatomy of
// High-Performance Matrix Multiplication", TOMS 2008; Van Zee and van de Geijn, "BLIS",
// TOMS 2015): five loops around a register-blocked micro-kernel.
//
//	for jc in N by NC:              B~ block, KC×NC, packed once per (jc, pc)
//	  for pc in K by KC:
//	    pack op(B)[pc:pc+KC, jc:jc+NC] → B~  (NR-wide micro-panels, k-major, zero-padded)
//	    for ic in M by MC:          A~ block, MC×KC, stays in L2
//	      pack op(A)[ic:ic+MC, pc:pc+KC] → A~ (MR-tall micro-panels, k-major, zero-padded)
//	      for jr in NC by NR:       one B~ micro-panel (KC×NR) stays in L1
//	        for ir in MC by MR:     A~ micro-panels stream from L2
//	          micro-kernel: C[MR×NR] = alpha·Σ_k A~[k,:]⊗B~[k,:] + beta'·C
//
// Transposes are absorbed by the packers, so NN, NT, TN and TT all run the same
// micro-kernel. The first K panel applies the caller's beta (beta == 0 never reads C,
// so NaNs in an uninitialised C do not leak); later panels accumulate with beta' = 1.
// Edge tiles (fewer than MR rows or NR columns left) run the same kernel into a
// scratch tile that is then merged into C, so the kernels only ever see full tiles.
//
// # Micro-kernels
//
// Three micro-kernels exist, chosen once at start-up from the CPU's features
// (golang.org/x/sys/cpu); Kernel reports which one runs:
//
//   - "avx512": Go assembly, 12×32 register tile (24 ZMM accumulators), VBROADCASTSS +
//     VFMADD231PS, for CPUs with AVX-512F.
//   - "avx2": Go assembly, 6×16 tile (12 YMM accumulators), for CPUs with AVX2 and FMA.
//   - "go": portable Go, a 4×4 tile, used on other CPUs and always under the
//     noasm build tag (go test -tags noasm ./kernels/internal/gemm/).
//
// Every assembly kernel executes VZEROUPPER before it returns: Go's scalar float code is
// legacy SSE, and a dirty upper YMM/ZMM state makes it up to 100× slower on recent Intel
// cores (see /work/shared/research/kernels.md, hazard 1).
//
// # Threads
//
// Sgemm splits C into up to MaxThreads() rectangular regions, chosen so that each region
// keeps whole micro-tiles and the packing work (perimeter) is smallest, and runs the serial
// algorithm on each region in its own goroutine with its own packing buffers. No locks are
// taken on the hot path. Small problems run on the calling goroutine.
//
// # Reference
//
// SgemmRef is the naive triple loop with float64 accumulation. Every fast path in this
// package (each micro-kernel, each packer, the threaded split) is tested against it.
//
// Argument errors (negative sizes, a leading dimension smaller than a row, a slice too
// short for its shape) are programming errors: Sgemm panics with a message that names
// the argument, as gonum's BLAS does.
package gemm
