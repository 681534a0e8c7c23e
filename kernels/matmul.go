package kernels

// ---------------------------------------------------------------------------
// Matmul: C[..., m, n] = op(A)[..., m, k] · op(B)[..., k, n]
//
// A is [..., m, k] ([..., k, m] when transA), B is [..., k, n] ([..., n, k]
// when transB). The leading (batch) dimensions of A and B must be equal, or
// one side is 2-D and is shared by every batch (a weight).
// ---------------------------------------------------------------------------

type mmPlan struct {
	batch, m, n, k     int
	aBatched, bBatched bool
	out                []int
}

func planMatmul(op string, as, bs []int, ta, tb bool) mmPlan {
	if len(as) < 2 || len(bs) < 2 {
		panic(shapeErr(op, as, bs, "both operands need at least 2 dimensions"))
	}
	ab, bb := as[:len(as)-2], bs[:len(bs)-2]
	m, ka := as[len(as)-2], as[len(as)-1]
	if ta {
		m, ka = ka, m
	}
	kb, n := bs[len(bs)-2], bs[len(bs)-1]
	if tb {
		kb, n = n, kb
	}
	if ka != kb {
		panic(shapeErr(op, as, bs, "inner dimensions %d and %d differ (transA=%v transB=%v)", ka, kb, ta, tb))
	}
	p := mmPlan{m: m, n: n, k: ka, aBatched: len(ab) > 0, bBatched: len(bb) > 0}
	var batchShape []int
	switch {
	case p.aBatched && p.bBatched:
		if !sameShape(ab, bb) {
			panic(shapeErr(op, as, bs, "batch dimensions %v and %v differ", ab, bb))
		}
		batchShape = ab
	case p.aBatched:
		batchShape = ab
	default:
		batchShape = bb
	}
	p.batch = numel(batchShape)
	p.out = append(append([]int{}, batchShape...), m, n)
	return p
}

func matmulFwd[T float](g gemmFn[T], p mmPlan, ta, tb bool, a, b, c []T) {
	m, n, k := p.m, p.n, p.k
	lda, ldb := k, n
	if ta {
		lda = m
	}
	if tb {
		ldb = k
	}
	if p.aBatched && !p.bBatched && !ta {
		g(false, tb, p.batch*m, n, k, 1, a, lda, b, ldb, 0, c, n)
		return
	}
	for bi := 0; bi < p.batch; bi++ {
		ao, bo := 0, 0
		if p.aBatched {
			ao = bi * m * k
		}
		if p.bBatched {
			bo = bi * k * n
		}
		g(ta, tb, m, n, k, 1, a[ao:], lda, b[bo:], ldb, 0, c[bi*m*n:], n)
	}
}

// matmulBwd accumulates dA and dB (either may be nil) from dC.
func matmulBwd[T float](g gemmFn[T], p mmPlan, ta, tb bool, a, b, dc, da, db []T) {
	m, n, k := p.m, p.n, p.k
	if p.aBatched && !p.bBatched && !ta {
		m *= p.batch // rows of A are independent: one big GEMM
		p.batch = 1
	}
	for bi := 0; bi < p.batch; bi++ {
		ao, bo := 0, 0
		if p.aBatched {
			ao = bi * m * k
		}
		if p.bBatched {
			bo = bi * k * n
		}
		A, B, dC := a[ao:], b[bo:], dc[bi*m*n:]
		if da != nil {
			dA := da[ao:]
			switch {
			case !ta && !tb:
				g(false, true, m, k, n, 1, dC, n, B, n, 1, dA, k)
			case !ta && tb:
				g(false, false, m, k, n, 1, dC, n, B, k, 1, dA, k)
			case ta && !tb:
				g(false, true, k, m, n, 1, B, n, dC, n, 1, dA, m)
			default:
				g(true, true, k, m, n, 1, B, k, dC, n, 1, dA, m)
			}
		}
		if db != nil {
			dB := db[bo:]
			switch {
			case !ta && !tb:
				g(true, false, k, n, m, 1, A, k, dC, n, 1, dB, n)
			case !ta && tb:
				g(true, false, n, k, m, 1, dC, n, A, k, 1, dB, k)
			case ta && !tb:
				g(false, false, k, n, m, 1, A, m, dC, n, 1, dB, n)
			default:
				g(true, true, n, k, m, 1, dC, n, A, m, 1, dB, k)
			}
		}
	}
}

// Matmul returns a·b for a [..., m, k] and b [..., k, n] (see MatmulT).
func (tp *Tape) Matmul(a, b *Tensor) *Tensor { return tp.MatmulT(a, b, false, false) }

// MatmulT returns op(a)·op(b), where op transposes the last two dimensions
// when the flag is set. Batch dimensions must match, or one operand is 2-D
// and shared across the batch of the other.
func (tp *Tape) MatmulT(a, b *Tensor, transA, transB bool) *Tensor {
	p := planMatmul("Matmul", a.Shape, b.Shape, transA, transB)
	if a.d != nil || b.d != nil {
		return tp.matmulDev(a, b, transA, transB, p)
	}
	out := Zeros(p.out...)
	matmulFwd(sgemm, p, transA, transB, a.Data, b.Data, out.Data)
	tp.record("Matmul", out, func() {
		var da, db []float32
		if wants(a) {
			da = a.gradBuf()
		}
		if wants(b) {
			db = b.gradBuf()
		}
		matmulBwd(sgemm, p, transA, transB, a.Data, b.Data, out.Grad, da, db)
	}, a, b)
	return out
}

// ---------------------------------------------------------------------------
// Linear: y[..., out] = x[..., in] · wᵀ + bias, with w in PyTorch's
// nn.Linear layout [out, in] and bias [out] (or nil).
// ---------------------------------------------------------------------------

func linearFwd[T float](g gemmFn[T], rows, in, out int, x, w, bias, y []T) {
	g(false, true, rows, out, in, 1, x, in, w, in, 0, y, out)
	if y32, ok := any(y).([]float32); ok && bias != nil {
		addRows(y32[:rows*out], any(bias).([]float32)[:out])
		return
	}
	if bias != nil {
		for r := 0; r < rows; r++ {
			yr := y[r*out : (r+1)*out]
			for j, bv := range bias[:out] {
				yr[j] += bv
			}
		}
	}
}

// linearBwd accumulates dw, dbias (each may be nil) and dx (may be nil),
// which it overwrites instead when dxFresh (its old contents are not read).
func linearBwd[T float](g gemmFn[T], rows, in, out int, x, w, dy, dx, dw, dbias []T, dxFresh bool) {
	if dx != nil {
		beta := T(1)
		if dxFresh {
			beta = 0
		}
		g(false, false, rows, in, out, 1, dy, out, w, in, beta, dx, in)
	}
	if dw != nil {
		g(true, false, out, in, rows, 1, dy, out, x, in, 1, dw, in)
	}
	if db32, ok := any(dbias).([]float32); ok && dbias != nil {
		sumRowsInto(db32[:out], any(dy).([]float32)[:rows*out])
		return
	}
	if dbias != nil {
		for r := 0; r < rows; r++ {
			for j, v := range dy[r*out : (r+1)*out] {
				dbias[j] += v
			}
		}
	}
}

// Linear returns x·wᵀ + bias for x [..., in], w [out, in] (nn.Linear's
// layout) and bias [out] or nil.
func (tp *Tape) Linear(x, w, bias *Tensor) *Tensor {
	if len(x.Shape) < 1 || len(w.Shape) != 2 || x.Shape[len(x.Shape)-1] != w.Shape[1] {
		panic(shapeErr("Linear", x.Shape, w.Shape, "want x [..., in] and w [out, in]"))
	}
	in, outDim := w.Shape[1], w.Shape[0]
	if bias != nil && (bias.Size() != outDim) {
		panic(shapeErr("Linear", w.Shape, bias.Shape, "bias must have %d values", outDim))
	}
	rows := x.Size() / max(in, 1)
	if in == 0 {
		rows = numel(x.Shape[:len(x.Shape)-1])
	}
	os := append(append([]int{}, x.Shape[:len(x.Shape)-1]...), outDim)
	if x.d != nil || w.d != nil || (bias != nil && bias.d != nil) {
		return tp.linearDev(x, w, bias, rows, in, outDim, os)
	}
	y := Zeros(os...)
	var bd []float32
	if bias != nil {
		bd = bias.Data
	}
	linearFwd(sgemm, rows, in, outDim, x.Data, w.Data, bd, y.Data)
	tp.record("Linear", y, func() {
		var dx, dw, db []float32
		dxFresh := false
		if wants(x) {
			dx, dxFresh = x.gradDst() // dx is written first: w or bias may be x itself
		}
		if wants(w) {
			dw = w.gradBuf()
		}
		if wants(bias) {
			db = bias.gradBuf()
		}
		linearBwd(sgemm, rows, in, outDim, x.Data, w.Data, y.Grad, dx, dw, db, dxFresh)
	}, x, w, bias)
	return y
}
