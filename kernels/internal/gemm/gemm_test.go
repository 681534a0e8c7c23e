package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// testKernels returns every micro-kernel this CPU can run, each also with a tiny
// blocking so that small shapes cross several MC, KC and NC blocks.
func testKernels() []*kernel {
	var ks []*kernel
	for _, k := range available() {
		ks = append(ks, k)
		ks = append(ks, &kernel{
			name: k.name + "/tiny-blocks",
			mr:   k.mr, nr: k.nr,
			mc: 2 * k.mr, kc: 5, nc: 2 * k.nr,
			micro: k.micro, edges: k.edges,
		})
		if len(k.edges) > 0 {
			ks = append(ks, &kernel{name: k.name + "/no-edge-kernels", mr: k.mr, nr: k.nr, mc: k.mc, kc: k.kc, nc: k.nc, micro: k.micro})
		}
	}
	return ks
}

// operands builds random A, B and C for the given call with row strides padded by
// pad elements, so that strided access is exercised. Padding holds a sentinel.
type operands struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
	lda, ldb, ldc  int
}

const sentinel = -12345.5

func newOperands(rng *rand.Rand, transA, transB bool, m, n, k, pad int, alpha, beta float32) *operands {
	o := &operands{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta}
	rowsA, colsA := m, k
	if transA {
		rowsA, colsA = k, m
	}
	rowsB, colsB := k, n
	if transB {
		rowsB, colsB = n, k
	}
	o.a, o.lda = randMatrix(rng, rowsA, colsA, pad)
	o.b, o.ldb = randMatrix(rng, rowsB, colsB, pad)
	o.c, o.ldc = randMatrix(rng, m, n, pad)
	return o
}

func randMatrix(rng *rand.Rand, rows, cols, pad int) ([]float32, int) {
	ld := max(1, cols+pad)
	x := make([]float32, rows*ld)
	for i := range x {
		if i%ld < cols {
			x[i] = float32(rng.NormFloat64())
		} else {
			x[i] = sentinel
		}
	}
	return x, ld
}

func (o *operands) String() string {
	return fmt.Sprintf("Sgemm(transA=%v, transB=%v, m=%d, n=%d, k=%d, alpha=%g, lda=%d, ldb=%d, beta=%g, ldc=%d)",
		o.transA, o.transB, o.m, o.n, o.k, o.alpha, o.lda, o.ldb, o.beta, o.ldc)
}

// check compares got (C after the fast path) with want (C after SgemmRef), element by
// element, within a bound derived from the magnitudes involved: float32 accumulation of
// k products errs by at most about k·ε·Σ|a||b|. It also checks that the padding past
// column n of each C row was not written.
func (o *operands) check(t *testing.T, who string, got, want []float32) {
	t.Helper()
	const eps = 1.0 / (1 << 23)
	bad := 0
	for i := 0; i < o.m; i++ {
		for j := 0; j < o.ldc; j++ {
			g, w := got[i*o.ldc+j], want[i*o.ldc+j]
			if j >= o.n {
				if g != sentinel {
					t.Errorf("%s: %v wrote C[%d][%d] past column n: got %g, want the untouched %g", who, o, i, j, g, float32(sentinel))
					return
				}
				continue
			}
			var mag float64
			for p := 0; p < o.k; p++ {
				mag += math.Abs(float64(o.at(o.a, o.lda, o.transA, i, p)) * float64(o.at(o.b, o.ldb, o.transB, p, j)))
			}
			mag = math.Abs(float64(o.alpha))*mag + math.Abs(float64(o.beta))*math.Abs(float64(o.c[i*o.ldc+j]))
			tol := float64(o.k+4) * eps * mag
			if d := math.Abs(float64(g) - float64(w)); !(d <= tol) {
				t.Errorf("%s: %v: C[%d][%d] got %g, want %g (|diff| %.3g > tol %.3g)", who, o, i, j, g, w, d, tol)
				if bad++; bad > 5 {
					return
				}
			}
		}
	}
}

// at returns op(X)[i][p] for X stored with stride ld.
func (o *operands) at(x []float32, ld int, trans bool, i, p int) float32 {
	if trans {
		return x[p*ld+i]
	}
	return x[i*ld+p]
}

func (o *operands) problem(c []float32) *problem {
	return &problem{transA: o.transA, transB: o.transB, m: o.m, n: o.n, k: o.k, alpha: o.alpha, beta: o.beta,
		a: o.a, lda: o.lda, b: o.b, ldb: o.ldb, c: c, ldc: o.ldc}
}

func (o *operands) want() []float32 {
	want := append([]float32(nil), o.c...)
	SgemmRef(o.transA, o.transB, o.m, o.n, o.k, o.alpha, o.a, o.lda, o.b, o.ldb, o.beta, want, o.ldc)
	return want
}

var shapes = [][3]int{
	{1, 1, 1}, {1, 7, 3}, {7, 1, 3}, {3, 5, 1}, {4, 4, 4}, {5, 17, 9},
	{12, 32, 16}, {13, 33, 17}, {6, 16, 11}, {25, 47, 31}, {37, 70, 64},
	{64, 64, 64}, {100, 3, 50}, {3, 100, 50}, {49, 130, 7}, {20, 40, 9}, {8, 64, 3},
}

// threadSmall makes even the smallest products use every thread they are given,
// so that the threaded split is tested on small shapes; it returns the undo.
func threadSmall() func() {
	old := minWorkPerThread
	minWorkPerThread = 1
	return func() { minWorkPerThread = old }
}

func TestSgemmMatchesRef(t *testing.T) {
	defer threadSmall()()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, kern := range testKernels() {
		for _, s := range shapes {
			for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
				for _, ab := range [][2]float32{{1, 0}, {1, 1}, {-0.5, 2}, {2.5, -1}} {
					pad := (s[0] + s[1]) % 3
					o := newOperands(rng, tr[0], tr[1], s[0], s[1], s[2], pad, ab[0], ab[1])
					want := o.want()
					for _, threads := range []int{1, 3} {
						got := append([]float32(nil), o.c...)
						run(kern, o.problem(got), threads)
						o.check(t, fmt.Sprintf("kernel %s, %d threads", kern.name, threads), got, want)
					}
				}
			}
		}
	}
}

// TestSgemmLarge crosses the real KC and NC blocking (with ragged edges) and the
// threaded split with every kernel; the tiny-block variants of TestSgemmMatchesRef
// cross MC as well.
func TestSgemmLarge(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, kern := range available() {
		for _, s := range [][3]int{{kern.mr*7 + 5, kern.nc + kern.nr + 5, kern.kc + 29}, {197, 75, 300}} {
			for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
				o := newOperands(rng, tr[0], tr[1], s[0], s[1], s[2], 3, 0.75, 0.5)
				want := o.want()
				for _, threads := range []int{1, 2, 4} {
					got := append([]float32(nil), o.c...)
					run(kern, o.problem(got), threads)
					o.check(t, fmt.Sprintf("kernel %s, %d threads", kern.name, threads), got, want)
				}
			}
		}
	}
}

// TestSgemmPublic runs the exported entry point, whatever kernel it picked.
func TestSgemmPublic(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	defer SetMaxThreads(0)
	for _, threads := range []int{1, 2, 0} {
		SetMaxThreads(threads)
		o := newOperands(rng, false, true, 70, 90, 110, 2, 1, 0.25)
		want := o.want()
		got := append([]float32(nil), o.c...)
		Sgemm(o.transA, o.transB, o.m, o.n, o.k, o.alpha, o.a, o.lda, o.b, o.ldb, o.beta, got, o.ldc)
		o.check(t, fmt.Sprintf("Sgemm (kernel %s, SetMaxThreads(%d))", Kernel(), threads), got, want)
	}
}

// TestSgemmBetaZeroIgnoresC: with beta == 0, C is not read, so NaN and Inf in C vanish.
func TestSgemmBetaZeroIgnoresC(t *testing.T) {
	defer threadSmall()()
	rng := rand.New(rand.NewPCG(7, 8))
	for _, kern := range testKernels() {
		for _, s := range [][3]int{{13, 35, 9}, {1, 1, 1}, {30, 70, 20}} {
			o := newOperands(rng, false, false, s[0], s[1], s[2], 1, 1.5, 0)
			for i := range o.c {
				if i%o.ldc < o.n {
					o.c[i] = float32(math.NaN())
				}
			}
			want := o.want()
			got := append([]float32(nil), o.c...)
			run(kern, o.problem(got), 2)
			for i, v := range got {
				if math.IsNaN(float64(v)) {
					t.Fatalf("kernel %s: %v left NaN at C[%d][%d]; beta == 0 must not read C", kern.name, o, i/o.ldc, i%o.ldc)
				}
			}
			o.c = make([]float32, len(o.c)) // magnitudes for the tolerance: C does not count
			o.check(t, "kernel "+kern.name, got, want)
		}
	}
}

// TestSgemmAlphaZero: with alpha == 0 (or k == 0), A and B are not read and C = beta·C.
func TestSgemmAlphaZero(t *testing.T) {
	nan := float32(math.NaN())
	a := []float32{nan, nan, nan, nan}
	b := []float32{nan, nan, nan, nan}
	for _, tc := range []struct {
		alpha, beta float32
		k           int
		c, want     []float32
	}{
		{0, 2, 2, []float32{1, 2, 3, 4}, []float32{2, 4, 6, 8}},
		{0, 1, 2, []float32{1, 2, 3, 4}, []float32{1, 2, 3, 4}},
		{0, 0, 2, []float32{nan, 2, 3, nan}, []float32{0, 0, 0, 0}},
		{3, 0.5, 0, []float32{1, 2, 3, 4}, []float32{0.5, 1, 1.5, 2}},
	} {
		for name, f := range map[string]func(bool, bool, int, int, int, float32, []float32, int, []float32, int, float32, []float32, int){"Sgemm": Sgemm, "SgemmRef": SgemmRef} {
			c := append([]float32(nil), tc.c...)
			f(false, false, 2, 2, tc.k, tc.alpha, a, max(1, tc.k), b, 2, tc.beta, c, 2)
			if fmt.Sprint(c) != fmt.Sprint(tc.want) {
				t.Errorf("%s(m=2, n=2, k=%d, alpha=%g, A=B=NaN, beta=%g, C=%v) got C=%v, want %v", name, tc.k, tc.alpha, tc.beta, tc.c, c, tc.want)
			}
		}
	}
}

func TestSgemmZeroSizes(t *testing.T) {
	for _, s := range [][3]int{{0, 0, 0}, {0, 5, 3}, {5, 0, 3}, {0, 0, 7}} {
		m, n, k := s[0], s[1], s[2]
		a := make([]float32, m*k)
		b := make([]float32, k*n)
		Sgemm(false, false, m, n, k, 1, a, max(1, k), b, max(1, n), 0, nil, max(1, n))
		Sgemm(true, true, m, n, k, 1, a, max(1, m), b, max(1, k), 1, nil, max(1, n))
		SgemmRef(true, false, m, n, k, 1, a, max(1, m), b, max(1, n), 1, nil, max(1, n))
	}
}

func TestSgemmPanics(t *testing.T) {
	f := make([]float32, 64)
	for _, tc := range []struct {
		name string
		call func()
		want string
	}{
		{"negative m", func() { Sgemm(false, false, -1, 2, 2, 1, f, 2, f, 2, 0, f, 2) }, "negative size"},
		{"lda < k", func() { Sgemm(false, false, 2, 2, 3, 1, f, 2, f, 2, 0, f, 2) }, "lda=2 is less than its 3 columns"},
		{"lda < m when transA", func() { Sgemm(true, false, 4, 2, 3, 1, f, 3, f, 2, 0, f, 2) }, "A (3×4 as stored, transposed)"},
		{"ldb < k when transB", func() { Sgemm(false, true, 2, 2, 5, 1, f, 5, f, 4, 0, f, 2) }, "B (2×5 as stored, transposed)"},
		{"short A", func() { Sgemm(false, false, 9, 2, 8, 1, f, 8, f, 2, 0, f, 2) }, "A (9×8 as stored): slice has 64 elements, want at least 72"},
		{"short C", func() { Sgemm(false, false, 2, 5, 2, 1, f, 2, f, 5, 0, f[:9], 5) }, "C (2×5 as stored): slice has 9 elements, want at least 10"},
		{"ldc < n", func() { SgemmRef(false, false, 2, 5, 2, 1, f, 2, f, 5, 0, f, 4) }, "ldc=4"},
	} {
		got := func() (msg string) {
			defer func() { msg = fmt.Sprint(recover()) }()
			tc.call()
			return "no panic"
		}()
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s: got panic %q, want one containing %q", tc.name, got, tc.want)
		}
	}
}

func TestMaxThreads(t *testing.T) {
	defer SetMaxThreads(0)
	for _, tc := range []struct{ set, want int }{{3, 3}, {1, 1}, {-2, MaxThreads()}} {
		SetMaxThreads(0)
		def := MaxThreads()
		SetMaxThreads(tc.set)
		want := tc.want
		if tc.set <= 0 {
			want = def
		}
		if got := MaxThreads(); got != want {
			t.Errorf("SetMaxThreads(%d); MaxThreads() = %d, want %d", tc.set, got, want)
		}
	}
}

// TestSplit checks that the regions tile C exactly, on micro-tile boundaries, and use
// no more goroutines than allowed.
func TestSplit(t *testing.T) {
	kern := available()[0]
	for _, s := range [][4]int{{1024, 1024, 1024, 2}, {196, 768, 768, 2}, {5, 5000, 500, 4}, {5000, 5, 500, 3}, {100, 100, 100, 16}, {8, 8, 8, 4}, {1, 1, 1, 8}} {
		m, n, k, threads := s[0], s[1], s[2], s[3]
		rs := split(kern, m, n, k, threads)
		if len(rs) < 1 || len(rs) > threads {
			t.Errorf("split(%d, %d, %d, threads=%d) gave %d regions, want 1..%d", m, n, k, threads, len(rs), threads)
		}
		covered := make([]int, m*n)
		for _, r := range rs {
			if r.i0%kern.mr != 0 || r.j0%kern.nr != 0 {
				t.Errorf("split(%d, %d, %d, threads=%d): region %+v does not start on a %d×%d tile boundary", m, n, k, threads, r, kern.mr, kern.nr)
			}
			for i := r.i0; i < r.i1; i++ {
				for j := r.j0; j < r.j1; j++ {
					covered[i*n+j]++
				}
			}
		}
		for idx, cnt := range covered {
			if cnt != 1 {
				t.Fatalf("split(%d, %d, %d, threads=%d) = %+v covers C[%d][%d] %d times, want once", m, n, k, threads, rs, idx/n, idx%n, cnt)
			}
		}
	}
	if rs := split(kern, 1024, 1024, 1024, 2); len(rs) != 2 {
		t.Errorf("split(1024, 1024, 1024, threads=2) = %+v, want 2 regions", rs)
	}
}

// FuzzSgemm checks the shape handling of every kernel against SgemmRef on small shapes
// with arbitrary transposes, strides, scalars and thread counts.
func FuzzSgemm(f *testing.F) {
	f.Add(uint8(3), uint8(5), uint8(7), uint8(0), uint8(0), uint8(1), uint64(1))
	f.Add(uint8(13), uint8(33), uint8(1), uint8(3), uint8(2), uint8(2), uint64(2))
	f.Add(uint8(0), uint8(4), uint8(4), uint8(1), uint8(1), uint8(1), uint64(3))
	f.Add(uint8(40), uint8(1), uint8(40), uint8(2), uint8(3), uint8(3), uint64(4))
	kerns := testKernels()
	defer threadSmall()()
	f.Fuzz(func(t *testing.T, m, n, k, flags, pad, threads uint8, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 99))
		alphas := []float32{1, -2, 0.5, 0}
		betas := []float32{0, 1, -0.5, 3}
		o := newOperands(rng, flags&1 != 0, flags&2 != 0, int(m%48), int(n%80), int(k%48), int(pad%4),
			alphas[(flags>>2)%4], betas[(flags>>4)%4])
		want := o.want()
		kern := kerns[int(seed%uint64(len(kerns)))]
		got := append([]float32(nil), o.c...)
		run(kern, o.problem(got), int(threads%5))
		o.check(t, "kernel "+kern.name, got, want)
	})
}

// TestTransposeRows checks the packers' transpose (assembly where this CPU has it,
// and the Go version) against the definition, including the zero padding.
func TestTransposeRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	t16, t8 := transpose16, transpose8
	defer func() { transpose16, transpose8 = t16, t8 }()
	for _, impl := range []string{"avx512", "avx2", "go"} {
		switch impl {
		case "avx512":
			if t16 == nil {
				continue
			}
		case "avx2":
			if t8 == nil {
				continue
			}
			transpose16 = nil
		case "go":
			transpose16, transpose8 = nil, nil
		}
		for _, s := range [][4]int{ // rows, cols, w, ld pad
			{12, 256, 12, 0}, {12, 37, 12, 3}, {5, 16, 12, 1}, {32, 64, 32, 0}, {20, 50, 32, 7},
			{0, 17, 12, 0}, {6, 33, 6, 2}, {16, 15, 16, 0}, {1, 1, 4, 0}, {17, 48, 32, 1},
			{6, 256, 6, 0}, {16, 24, 16, 3}, {3, 9, 6, 0}, {9, 40, 16, 1},
		} {
			rows, cols, w, pad := s[0], s[1], s[2], s[3]
			ld := cols + pad
			src := randSlice(rng, max(1, rows*ld))
			dst := make([]float32, cols*w)
			for i := range dst {
				dst[i] = sentinel
			}
			transposeRows(dst, src, ld, rows, cols, w)
			for c := 0; c < cols; c++ {
				for r := 0; r < w; r++ {
					want := float32(0)
					if r < rows {
						want = src[r*ld+c]
					}
					if got := dst[c*w+r]; got != want {
						t.Fatalf("%s: transposeRows(rows=%d, cols=%d, w=%d, ld=%d): dst[%d*%d+%d] got %g, want %g", impl, rows, cols, w, ld, c, w, r, got, want)
					}
				}
			}
		}
	}
}

func TestPick(t *testing.T) {
	ks := available()
	for _, k := range ks {
		if got := pick(k.name); got != k {
			t.Errorf("pick(%q) = %q, want %q", k.name, got.name, k.name)
		}
	}
	for _, name := range []string{"", "sse", "AVX2 "} {
		if got := pick(name); got != ks[0] {
			t.Errorf("pick(%q) = %q, want the fastest available, %q", name, got.name, ks[0].name)
		}
	}
	if ks[len(ks)-1].name != "go" {
		t.Errorf("available() = %v: the portable kernel must always be last", ks)
	}
}

// TestSgemmConcurrent: independent calls from several goroutines share the
// workspace pool but nothing else.
func TestSgemmConcurrent(t *testing.T) {
	const callers = 4
	ops := make([]*operands, callers)
	wants := make([][]float32, callers)
	gots := make([][]float32, callers)
	for i := range ops {
		rng := rand.New(rand.NewPCG(uint64(i), 11))
		ops[i] = newOperands(rng, i%2 == 1, i/2 == 1, 40+13*i, 70-9*i, 300+i, i, 1, 0.5)
		wants[i] = ops[i].want()
		gots[i] = append([]float32(nil), ops[i].c...)
	}
	done := make(chan int)
	for i := range ops {
		go func() {
			o := ops[i]
			for rep := 0; rep < 3; rep++ {
				copy(gots[i], o.c)
				Sgemm(o.transA, o.transB, o.m, o.n, o.k, o.alpha, o.a, o.lda, o.b, o.ldb, o.beta, gots[i], o.ldc)
			}
			done <- i
		}()
	}
	for range ops {
		i := <-done
		ops[i].check(t, fmt.Sprintf("concurrent caller %d", i), gots[i], wants[i])
	}
}

// TestSgemmPackers runs whole products with each transposing packer this CPU
// has (AVX-512, AVX2, Go), so that every packer is checked inside the driver too.
func TestSgemmPackers(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 13))
	t16, t8 := transpose16, transpose8
	defer func() { transpose16, transpose8 = t16, t8 }()
	for _, impl := range []string{"avx512", "avx2", "go"} {
		switch {
		case impl == "avx512" && t16 == nil, impl == "avx2" && t8 == nil:
			continue
		case impl == "avx2":
			transpose16 = nil
		case impl == "go":
			transpose16, transpose8 = nil, nil
		}
		for _, kern := range testKernels() {
			for _, s := range [][3]int{{29, 45, 40}, {12, 32, 16}, {70, 33, 9}} {
				for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
					o := newOperands(rng, tr[0], tr[1], s[0], s[1], s[2], 1, 1, 0.5)
					got := append([]float32(nil), o.c...)
					run(kern, o.problem(got), 1)
					o.check(t, fmt.Sprintf("packer %s, kernel %s", impl, kern.name), got, o.want())
				}
			}
		}
	}
}

// TestCopyRows checks the packers' row copy (each fixed-width fast case and the
// general one) against the definition, including the zero padding.
func TestCopyRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 15))
	for _, s := range [][4]int{ // rows, cols, w, ld pad
		{5, 32, 32, 3}, {5, 16, 16, 0}, {7, 12, 12, 5}, {3, 6, 6, 1}, {9, 4, 4, 2}, {4, 5, 12, 0}, {2, 31, 32, 1}, {0, 12, 12, 0},
	} {
		rows, cols, w, pad := s[0], s[1], s[2], s[3]
		ld := cols + pad
		src := randSlice(rng, max(1, rows*ld))
		dst := make([]float32, max(1, rows*w))
		for i := range dst {
			dst[i] = sentinel
		}
		copyRows(dst, src, ld, rows, cols, w)
		for r := 0; r < rows; r++ {
			for c := 0; c < w; c++ {
				want := float32(0)
				if c < cols {
					want = src[r*ld+c]
				}
				if got := dst[r*w+c]; got != want {
					t.Fatalf("copyRows(rows=%d, cols=%d, w=%d, ld=%d): dst[%d*%d+%d] got %g, want %g", rows, cols, w, ld, r, w, c, got, want)
				}
			}
		}
	}
}

// TestCopyRowsToPanels checks the row-order B packer against copyRows
// applied panel by panel (the naive reference).
func TestCopyRowsToPanels(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 17))
	for _, s := range [][4]int{{1, 1, 16, 0}, {5, 3, 32, 7}, {7, 2, 16, 1}, {3, 4, 32, 0}, {0, 2, 32, 0}, {6, 5, 12, 3}, {1, 1, 12, 0}} { // rows, panels, nr, ld pad
		rows, panels, nr, pad := s[0], s[1], s[2], s[3]
		ld := panels*nr + pad
		src := randSlice(rng, max(1, rows*ld))
		got, want := make([]float32, max(1, panels*rows*nr)), make([]float32, max(1, panels*rows*nr))
		copyRowsToPanels(got, src, ld, rows, panels, nr)
		for q := 0; q < panels && rows > 0; q++ {
			copyRows(want[q*rows*nr:], src[q*nr:], ld, rows, nr, nr)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("copyRowsToPanels(rows=%d, panels=%d, nr=%d, ld=%d)[%d] = %g, want %g", rows, panels, nr, ld, i, got[i], want[i])
			}
		}
	}
}

// TestTransposePublic checks the exported Transpose against the naive
// definition, padding columns included, and its argument panic.
func TestTransposePublic(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 19))
	rows, cols, ld, w := 37, 70, 75, 48
	src := randSlice(rng, rows*ld)
	dst := make([]float32, cols*w)
	for i := range dst {
		dst[i] = sentinel
	}
	Transpose(dst, src, ld, rows, cols, w)
	for c := 0; c < cols; c++ {
		for r := 0; r < w; r++ {
			want := float32(0)
			if r < rows {
				want = src[r*ld+c]
			}
			if got := dst[c*w+r]; got != want {
				t.Fatalf("Transpose(rows=%d, cols=%d, ld=%d, w=%d): dst[%d*%d+%d] = %g, want %g", rows, cols, ld, w, c, w, r, got, want)
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Transpose with w < rows did not panic")
		}
	}()
	Transpose(dst, src, ld, rows, cols, rows-1)
}
