package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestExpf(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	worst := 0.0
	check := func(x float32) {
		got := float64(expf(x))
		want := math.Exp(float64(x))
		if x < -87 {
			if got != 0 {
				t.Fatalf("expf(%g) = %g, want 0 (flushed)", x, got)
			}
			return
		}
		if want > math.MaxFloat32 {
			if !math.IsInf(got, 1) {
				t.Fatalf("expf(%g) = %g, want +Inf", x, got)
			}
			return
		}
		rel := math.Abs(got-want) / want
		worst = max(worst, rel)
		if rel > 3e-7 {
			t.Fatalf("expf(%g) = %.9g, want %.9g (rel err %.3g)", x, got, want, rel)
		}
	}
	for _, x := range []float32{0, 1, -1, 0.5, -0.5, 88, 88.7, 88.72, 88.73, -86.9, -87, -87.1, -100, float32(math.Inf(-1)), 1e-8} {
		check(x)
	}
	for i := 0; i < 200000; i++ {
		check(float32(rng.Float64()*180 - 90))
	}
	t.Logf("worst relative error %.3g", worst)
}

// TestRowKernels checks the AVX2 row kernels against the pure-Go loops on
// every length 0..40 (all remainders of 8) and extreme values.
func TestRowKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	ninf := float32(math.Inf(-1))
	for n := 0; n <= 40; n++ {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.Float64()*190 - 100)
			if i%7 == 3 {
				x[i] = ninf
			}
		}
		m := float32(rng.Float64()*4 - 2)
		want := append([]float32{}, x...)
		wantSum := expSubRowGo(want, m)
		got := append([]float32{}, x...)
		gotSum := expSubRow(got, m)
		for i := range want {
			if x[i]-m > 88.37 {
				continue // the vector kernel saturates here; attention and softmax never exceed 0
			}
			if d := math.Abs(float64(got[i] - want[i])); d > 4e-7*float64(want[i]) {
				t.Fatalf("expSubRow(n=%d)[%d] at x−m=%g: %g, pure Go %g", n, i, x[i]-m, got[i], want[i])
			}
		}
		if n > 0 && max(wantSum, gotSum) < 1e30 && math.Abs(float64(gotSum-wantSum)) > 1e-6*float64(wantSum) {
			t.Fatalf("expSubRow(n=%d) sum %g, pure Go %g", n, gotSum, wantSum)
		}
		wm := ninf
		for _, v := range x {
			wm = max(wm, v)
		}
		if gm := rowMax(x, ninf); gm != wm {
			t.Fatalf("rowMax(n=%d) = %g, want %g", n, gm, wm)
		}
		p, dp := append([]float32{}, x...), make([]float32, n)
		wdp := make([]float32, n)
		for i := range p {
			p[i] = float32(rng.Float64())
			dp[i] = float32(rng.NormFloat64())
			wdp[i] = p[i] * (dp[i] - 0.3)
		}
		dsRow(p, dp, 0.3)
		for i := range dp {
			if dp[i] != wdp[i] {
				t.Fatalf("dsRow(n=%d)[%d] = %g, want %g", n, i, dp[i], wdp[i])
			}
		}
	}
}

// TestUnaryFast32 compares the float32 activation path (the AVX2 GELU
// kernels where available) with the float64 reference over a wide range,
// including saturated tails, on lengths that leave every remainder of 8.
func TestUnaryFast32(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, k := range []unaryKind{unGELU, unSiLU, unSigmoid, unGELUErf} {
		for _, n := range []int{1, 7, 8, 9, 64, 1001, 3000} {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(rng.NormFloat64() * 4)
			}
			x[0] = []float32{-60, 60, 0, 1e-4, -9.5, 9.5}[n%6]
			y, dx, dy := make([]float32, n), make([]float32, n), make([]float32, n)
			for i := range dy {
				dy[i] = float32(rng.NormFloat64())
			}
			unaryFwd32(k, x, y)
			unaryBwd32(k, x, dy, dx)
			for i, v := range x {
				wy, wd := unaryRef(k, float64(v))
				wd *= float64(dy[i])
				if math.Abs(float64(y[i])-wy) > 2e-6*(1+math.Abs(wy)) {
					t.Fatalf("%s(%g) = %.9g, want %.9g", unaryNames[k], v, y[i], wy)
				}
				if math.Abs(float64(dx[i])-wd) > 2e-6*(1+math.Abs(wd)) {
					t.Fatalf("%s'(%g)·%g = %.9g, want %.9g", unaryNames[k], v, dy[i], dx[i], wd)
				}
			}
		}
	}
}

// TestAddVec checks addVec (the AVX2 kernel where available) against
// addVecGo on every length 0..70, in place and out of place.
func TestAddVec(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for n := 0; n <= 70; n++ {
		a, b := make([]float32, n), make([]float32, n)
		for i := range a {
			a[i], b[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		want := make([]float32, n)
		addVecGo(want, a, b)
		got := make([]float32, n)
		addVec(got, a, b)
		inPlace := append([]float32{}, a...)
		addTo(inPlace, b)
		for i := range want {
			if got[i] != want[i] || inPlace[i] != want[i] {
				t.Fatalf("addVec(n=%d)[%d]: got %g, in place %g, want %g", n, i, got[i], inPlace[i], want[i])
			}
		}
	}
	x, v := []float32{1, 2, 3, 4, 5, 6}, []float32{10, 20, 30}
	addRows(x, v)
	acc := []float32{1, 1, 1}
	sumRowsInto(acc, x)
	if want := []float32{11, 22, 33, 14, 25, 36}; !slices.Equal(x, want) {
		t.Fatalf("addRows: got %v, want %v", x, want)
	}
	if want := []float32{26, 48, 70}; !slices.Equal(acc, want) {
		t.Fatalf("sumRowsInto: got %v, want %v", acc, want)
	}
}

// TestLayerNormBwd32Fast compares the float32 LayerNorm backward (the
// AVX2 row kernels where available) with the float64 reference and with
// the pure-Go float32 loop, on widths that leave every remainder of 8.
// The gradients accumulate into non-zero buffers, as in training.
func TestLayerNormBwd32Fast(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, c := range []int{1, 7, 8, 9, 16, 31, 64, 257} {
		const rows = 5
		x64, w64, dy64 := make([]float64, rows*c), make([]float64, c), make([]float64, rows*c)
		for i := range x64 {
			x64[i], dy64[i] = rng.NormFloat64()*3+1, rng.NormFloat64()
		}
		for i := range w64 {
			w64[i] = rng.NormFloat64()
		}
		y64, mean64, rstd64 := make([]float64, rows*c), make([]float64, rows), make([]float64, rows)
		layerNormFwd(rows, c, x64, w64, nil, y64, mean64, rstd64, 1e-5)
		start := func(n int) []float64 { // non-zero initial gradients
			g := make([]float64, n)
			for i := range g {
				g[i] = float64(i%5) * 0.25
			}
			return g
		}
		dx64, dw64, db64 := start(rows*c), start(c), start(c)
		layerNormBwd(rows, c, x64, w64, mean64, rstd64, dy64, dx64, dw64, db64)

		f32 := func(v []float64) []float32 {
			o := make([]float32, len(v))
			for i, x := range v {
				o[i] = float32(x)
			}
			return o
		}
		x, w, dy, mean, rstd := f32(x64), f32(w64), f32(dy64), f32(mean64), f32(rstd64)
		dx, dw, db := f32(start(rows*c)), f32(start(c)), f32(start(c))
		layerNormBwd32(rows, c, x, w, mean, rstd, dy, dx, dw, db)
		gx, gw, gb := f32(start(rows*c)), f32(start(c)), f32(start(c))
		layerNormBwd32Go(rows, c, x, w, mean, rstd, dy, gx, gw, gb)
		for _, cmp := range []struct {
			name      string
			got, pure []float32
			want      []float64
		}{{"dx", dx, gx, dx64}, {"dw", dw, gw, dw64}, {"db", db, gb, db64}} {
			for i, v := range cmp.want {
				tol := 2e-5 * (1 + math.Abs(v))
				if math.Abs(float64(cmp.got[i])-v) > tol || math.Abs(float64(cmp.pure[i])-v) > tol {
					t.Fatalf("layerNormBwd32(rows=%d, c=%d) %s[%d] = %.8g (pure Go %.8g), want %.8g", rows, c, cmp.name, i, cmp.got[i], cmp.pure[i], v)
				}
			}
		}
	}
}

// TestAdamWFast runs a few AdamW steps with adamwFast (the AVX2 kernel on
// whole groups of 8) and with the float64-sqrt loop adamwUpdate on the same
// state, for lengths that leave every remainder of 8, with and without
// weight decay: the results must be identical.
func TestAdamWFast(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, n := range []int{1, 7, 8, 9, 40, 1001} {
		for _, decay := range []bool{false, true} {
			p := make([]float32, n)
			for i := range p {
				p[i] = float32(rng.NormFloat64())
			}
			pw, m, v, mw, vw := append([]float32{}, p...), make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
			g := make([]float32, n)
			for step := 1; step <= 4; step++ {
				for i := range g {
					g[i] = float32(rng.NormFloat64() * math.Pow(10, float64(i%5-3)))
				}
				bc1, bc2 := 1-math.Pow(0.9, float64(step)), 1-math.Pow(0.999, float64(step))
				adamwFast(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, bc1, bc2, decay, 0.1)
				adamwUpdate(pw, g, mw, vw, 1e-2, 0.9, 0.999, 1e-8, bc1, bc2, decay, 0.1)
			}
			for i := range p {
				for _, c := range []struct {
					name      string
					got, want float32
				}{{"p", p[i], pw[i]}, {"m", m[i], mw[i]}, {"v", v[i], vw[i]}} {
					if c.got != c.want {
						t.Fatalf("adamwFast(n=%d, decay=%v) %s[%d] = %.9g, want %.9g", n, decay, c.name, i, c.got, c.want)
					}
				}
			}
		}
	}
}

// TestUnaryBwdSet checks the overwriting backward (set = true) against the
// accumulating one started from zeros: dx starts as NaN garbage, which
// must not leak.
func TestUnaryBwdSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for _, k := range []unaryKind{unGELU, unSiLU, unReLU, unGELUErf} {
		for _, n := range []int{1, 7, 8, 9, 64, 1001} {
			x, dy := make([]float32, n), make([]float32, n)
			for i := range x {
				x[i], dy[i] = float32(rng.NormFloat64()*3), float32(rng.NormFloat64())
			}
			want := make([]float32, n)
			unaryBwd32(k, x, dy, want)
			got := make([]float32, n)
			for i := range got {
				got[i] = float32(math.NaN())
			}
			unaryBwd32Set(k, x, dy, got, true)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("unaryBwd32Set(%s, n=%d, set)[%d] = %g, want %g", unaryNames[k], n, i, got[i], want[i])
				}
			}
		}
	}
}

// TestLayerNormFwd32Fast compares the float32 LayerNorm forward (the AVX2
// row kernel where available) with the float64 reference and, bit for
// bit, with the pure-Go float32 loop, on widths that leave every remainder of 8, with a large
// mean (the centred variance must not cancel).
func TestLayerNormFwd32Fast(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, c := range []int{1, 7, 8, 9, 16, 31, 64, 257} {
		const rows = 4
		x64, w64, b64 := make([]float64, rows*c), make([]float64, c), make([]float64, c)
		for i := range x64 {
			x64[i] = float64(float32(rng.NormFloat64()*2 + 50))
		}
		for i := range w64 {
			w64[i], b64[i] = float64(float32(rng.NormFloat64())), float64(float32(rng.NormFloat64()))
		}
		y64, m64, r64 := make([]float64, rows*c), make([]float64, rows), make([]float64, rows)
		layerNormFwd(rows, c, x64, w64, b64, y64, m64, r64, 1e-5)
		f32 := func(v []float64) []float32 {
			o := make([]float32, len(v))
			for i, x := range v {
				o[i] = float32(x)
			}
			return o
		}
		x, w, b := f32(x64), f32(w64), f32(b64)
		y, m, r := make([]float32, rows*c), make([]float32, rows), make([]float32, rows)
		layerNormFwd32(rows, c, x, w, b, y, m, r, 1e-5)
		gy, gm, gr := make([]float32, rows*c), make([]float32, rows), make([]float32, rows)
		layerNormFwd32Go(rows, c, x, w, b, gy, gm, gr, 1e-5)
		for _, cmp := range []struct {
			name      string
			got, pure []float32
			want      []float64
		}{{"y", y, gy, y64}, {"mean", m, gm, m64}, {"rstd", r, gr, r64}} {
			for i, v := range cmp.want {
				tol := 2e-5 * (1 + math.Abs(v))
				if math.Abs(float64(cmp.got[i])-v) > tol || cmp.got[i] != cmp.pure[i] {
					t.Fatalf("layerNormFwd32(rows=%d, c=%d) %s[%d] = %.8g, pure Go %.8g (must agree bit for bit), float64 %.8g", rows, c, cmp.name, i, cmp.got[i], cmp.pure[i], v)
				}
			}
		}
	}
}

// TestGELUAVX512 checks that the 16-lane GELU kernels agree bit for bit
// with the 8-lane ones (forward, accumulating and overwriting backward),
// including saturated tails and NaN.
func TestGELUAVX512(t *testing.T) {
	if !haveAttnMicro || !haveAVX2 {
		t.Skip("no AVX-512")
	}
	rng := rand.New(rand.NewPCG(25, 26))
	const n = 4096
	x, dy, acc0 := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range x {
		x[i], dy[i], acc0[i] = float32(rng.NormFloat64()*4), float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	copy(x, []float32{-60, 60, 0, 1e-4, -9.5, 9.5, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), -1e-30, 1e30, -1e30})
	y8, y16 := make([]float32, n), make([]float32, n)
	geluAVX2(&x[0], &y8[0], n)
	geluAVX512(&x[0], &y16[0], n)
	for _, acc := range []int{0, 1} {
		d8, d16 := append([]float32{}, acc0...), append([]float32{}, acc0...)
		geluBwdAVX2(&x[0], &dy[0], &d8[0], n, acc)
		geluBwdAVX512(&x[0], &dy[0], &d16[0], n, acc)
		for i := range x {
			if math.Float32bits(y8[i]) != math.Float32bits(y16[i]) || math.Float32bits(d8[i]) != math.Float32bits(d16[i]) {
				t.Fatalf("GELU(%g) acc=%d: AVX-512 y %g dx %g, AVX2 y %g dx %g", x[i], acc, y16[i], d16[i], y8[i], d8[i])
			}
		}
	}
}
