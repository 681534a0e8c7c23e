//go:build amd64 && !noasm

package kernels

import "golang.org/x/sys/cpu"

// The AVX2 row kernels of vec_amd64.s. Each handles a multiple of 8
// elements and ends with VZEROUPPER, so the scalar Go code after it pays
// no AVX-to-SSE transition penalty.

//go:noescape
func expSubAVX2(x *float32, n int, m float32) float32

//go:noescape
func maxAVX2(x *float32, n int) float32

//go:noescape
func dsAVX2(p, dp *float32, n int, delta float32)

//go:noescape
func geluAVX2(x, y *float32, n int)

//go:noescape
func erfCdfAVX2(x, e, c *float32, n int)

//go:noescape
func geluBwdAVX2(x, dy, dx *float32, n, acc int)

var haveAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func addVecAVX2(out, a, b *float32, n int)

//go:noescape
func lnBwdSumsAVX2(x, dy, w *float32, n int, m float32) (sdn, sdxc float32)

//go:noescape
func lnBwdApplyAVX2(x, dy, w, dx, dw, db *float32, n int, m, rs, mdn, mdnn float32)

//go:noescape
func adamwAVX2(p, gr, m, v *float32, n int, b1, ob1, b2, ob2, shrink, step float32, sq, eps float64)

//go:noescape
func lnFwdApplyAVX2(x, w, b, y *float32, n int, m, rs float32)
