//go:build amd64 && !noasm

package gemm

import "golang.org/x/sys/cpu"

//go:generate go run gen_kernels.go

// microAVX512 implements microFunc for a 12×32 tile with AVX-512F (kernel_avx512_amd64.s).
//
//go:noescape
func microAVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32)

// microAVX512x8 and microAVX512x4 implement microFunc for the last 8 or 4 rows of
// C: an 8×32 or 4×32 tile read from 12-row A panels.
//
//go:noescape
func microAVX512x8(kc int, a, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func microAVX512x4(kc int, a, b, c *float32, ldc int, alpha, beta float32)

// microAVX2 implements microFunc for a 6×16 tile with AVX2 and FMA (kernel_avx2_amd64.s).
//
//go:noescape
func microAVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32)

// transpose16AVX512 implements transpose16 (transpose_avx512_amd64.s).
//
//go:noescape
func transpose16AVX512(dst *float32, ldd int, src *float32, lds int, rows, lanes, blocks int)

// peakAVX512 runs n iterations of 24 independent ZMM FMAs (peak_amd64.s); the
// benchmarks use it as the measured FMA peak.
//
//go:noescape
func peakAVX512(n int)

// peakAVX2 runs n iterations of 12 independent YMM FMAs (peak_amd64.s).
//
//go:noescape
func peakAVX2(n int)

// transpose8AVX2 implements transpose8 (transpose_avx2_amd64.s).
//
//go:noescape
func transpose8AVX2(dst *float32, ldd int, src *float32, lds int, rows, blocks int, mask *[8]int32)

func init() {
	if cpu.X86.HasAVX512F {
		transpose16 = transpose16AVX512
	}
	if cpu.X86.HasAVX2 {
		transpose8 = transpose8AVX2
	}
}

// avx512Kernel: the 12×32 tile holds 24 of the 32 ZMM registers. One packed A
// micro-panel (12×384 floats = 18 KiB) stays in L1, the B~ block (384×480 floats =
// 720 KiB) in L2. The sizes follow BLIS's Skylake-X sgemm (KC=384, a 480-wide L2
// block) and won, by a few per cent, a side-by-side comparison on the model shapes.
// MC only sets how many rows of A share one packing of each B~ block (the A~
// block streams from L3, one micro-panel at a time): 2304 rows cover the 2048
// token rows of a training micro-batch, so B is packed once instead of twice.
var avx512Kernel = kernel{
	name: "avx512",
	mr:   12, nr: 32,
	mc: 2304, kc: 384, nc: 480,
	micro: microAVX512,
	edges: []edgeKernel{{4, microAVX512x4}, {8, microAVX512x8}},
}

// avx2Kernel: the BLIS Haswell shape, 6×16 in 12 of the 16 YMM registers.
var avx2Kernel = kernel{
	name: "avx2",
	mr:   6, nr: 16,
	mc: 1536, kc: 256, nc: 480,
	micro: microAVX2,
}

// available lists the micro-kernels this CPU can run, fastest first. cpu.X86 reports
// AVX-512 and AVX only where the operating system saves their registers too.
func available() []*kernel {
	var ks []*kernel
	if cpu.X86.HasAVX512F {
		ks = append(ks, &avx512Kernel)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, &avx2Kernel)
	}
	return append(ks, &goKernel)
}
