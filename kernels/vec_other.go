//go:build !amd64 || noasm

package kernels

// Without the assembly row kernels every caller takes its pure-Go loop.

const haveAVX2 = false

func expSubAVX2(x *float32, n int, m float32) float32 {
	panic("kernels: no AVX2 kernels in this build")
}

func maxAVX2(x *float32, n int) float32 { panic("kernels: no AVX2 kernels in this build") }

func dsAVX2(p, dp *float32, n int, delta float32) { panic("kernels: no AVX2 kernels in this build") }

func geluAVX2(x, y *float32, n int) { panic("kernels: no AVX2 kernels in this build") }

func erfCdfAVX2(x, e, c *float32, n int) { panic("kernels: no AVX2 kernels in this build") }

func geluBwdAVX2(x, dy, dx *float32, n, acc int) { panic("kernels: no AVX2 kernels in this build") }

func addVecAVX2(out, a, b *float32, n int) { panic("kernels: no AVX2 kernels in this build") }

func lnBwdSumsAVX2(x, dy, w *float32, n int, m float32) (sdn, sdxc float32) {
	panic("kernels: no AVX2 kernels in this build")
}

func lnBwdApplyAVX2(x, dy, w, dx, dw, db *float32, n int, m, rs, mdn, mdnn float32) {
	panic("kernels: no AVX2 kernels in this build")
}

func adamwAVX2(p, gr, m, v *float32, n int, b1, ob1, b2, ob2, shrink, step float32, sq, eps float64) {
	panic("kernels: no AVX2 kernels in this build")
}

func lnFwdApplyAVX2(x, w, b, y *float32, n int, m, rs float32) {
	panic("kernels: no AVX2 kernels in this build")
}
