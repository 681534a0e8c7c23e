//go:build amd64 && !noasm

package kernels

import "golang.org/x/sys/cpu"

// attnMicroN computes C[6×64] = alpha·A·B (+ C when accum != 0) with A
// row-major (A[i][p] = a[i·lda+p]), B row-major k×64 (row stride ldb), C
// row stride ldc. All strides are in floats.
//
//go:noescape
func attnMicroN(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha float32, accum int)

// attnMicroT is attnMicroN with A transposed: A[i][p] = a[p·lda+i].
//
//go:noescape
func attnMicroT(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha float32, accum int)

// expSubAVX512 is expSubAVX2 on 16 lanes (n a multiple of 16).
//
//go:noescape
func expSubAVX512(x *float32, n int, m float32) float32

var haveAttnMicro = cpu.X86.HasAVX512F

// geluAVX512 is geluAVX2 on 16 lanes (n a multiple of 16), bit for bit.
//
//go:noescape
func geluAVX512(x, y *float32, n int)

// geluBwdAVX512 is geluBwdAVX2 on 16 lanes (n a multiple of 16), bit for bit.
//
//go:noescape
func geluBwdAVX512(x, dy, dx *float32, n, acc int)
