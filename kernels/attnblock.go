package kernels

import (
	"fmt"
	"math"
	"sync"

	"github.com/loomtrain/loom/kernels/internal/gemm"
)

// This file holds the block-attention primitives that both the
// single-process Attention op and ring attention (package collective) are
// built from. Equations: FlashAttention-2 / RingAttention
// (../shared/research/collectives.md §6).
//
// Layout: q is [nq, h, d], k and v are [nk, h, d], o/do/dq/dk/dv the same as
// their inputs, row-major float32 (token-major, heads inside). lse and delta
// are [nq, h].

// AttnMask says which (query, key) pairs may attend, in GLOBAL terms, so
// that a ring rank can apply it to a key/value block that came from another
// rank. A nil *AttnMask is full attention.
type AttnMask struct {
	Causal     bool    // key may be attended only if KPos[j] <= QPos[i]
	QPos, KPos []int32 // global positions of the query/key rows (required when Causal)
	QSeg, KSeg []int32 // segment ids (packed sequences); nil means one segment. Different segments never attend.
	// Prefix (with Causal) makes keys at positions < Prefix visible to every
	// query of their segment: the prefix-LM / UniLM mask of BLIP-2's ITG loss
	// (the learned queries see each other, text sees the queries and earlier
	// text). 0 is plain causal.
	Prefix int32
}

// allowed reports whether query row i may attend key row j.
func (m *AttnMask) allowed(i, j int) bool {
	if m == nil {
		return true
	}
	if seg(m.QSeg, i) != seg(m.KSeg, j) {
		return false
	}
	if m.Causal {
		kp := m.KPos[j]
		return kp <= m.QPos[i] || kp < m.Prefix
	}
	return true
}

func seg(s []int32, i int) int32 {
	if s == nil {
		return 0
	}
	return s[i]
}

func (m *AttnMask) check(op string, nq, nk int) {
	if m == nil {
		return
	}
	if m.Causal && (len(m.QPos) != nq || len(m.KPos) != nk) {
		panic(fmt.Errorf("kernels: %s: causal mask needs QPos (%d) and KPos (%d) for %d queries and %d keys", op, len(m.QPos), len(m.KPos), nq, nk))
	}
	if (m.QSeg != nil && len(m.QSeg) != nq) || (m.KSeg != nil && len(m.KSeg) != nk) {
		panic(fmt.Errorf("kernels: %s: QSeg has %d and KSeg %d entries for %d queries and %d keys", op, len(m.QSeg), len(m.KSeg), nq, nk))
	}
}

func checkAttnDims(op string, nq, nk, h, d int) {
	if nq < 0 || nk < 0 || h < 0 || d < 1 {
		panic(fmt.Errorf("kernels: %s: nq %d, nk %d, h %d must be >= 0 and head dim %d >= 1", op, nq, nk, h, d))
	}
}

func checkAttnBuf(op, name string, buf []float32, n int) {
	if len(buf) < n {
		panic(fmt.Errorf("kernels: %s: %s has %d values, needs %d", op, name, len(buf), n))
	}
}

// Tile sizes: a 96×192 score tile (72 KiB) and its probabilities stay in
// L2 next to the K/V tiles. With a head dim that is a multiple of 64
// (64, 128) and AVX-512, every tile whose width (keys) is a multiple of 64
// runs on the attention micro-kernels (attn_amd64.s: rows in sixes, columns
// in 64s; a last group of fewer than six rows or key columns goes through
// padding or a scratch tile); other tiles go through sgemm. The tile rows
// must be a multiple of 6 for that (the scratch buffers hold whole six-row
// groups).
// Variables so that tests can exercise other tilings.
var (
	attnBr = 96  // query rows per tile
	attnBc = 192 // key rows per tile

	// A causal block of at most attnShortKeys keys uses attnShortBr ×
	// attnShortBc tiles instead: smaller tiles skip more of the masked
	// triangle, which outweighs their overhead for short blocks (thread CPU
	// of forward + backward, 4 heads of 64: seq 256 −15%, seq 512 −12%; seq
	// 1024 and full attention are faster on the large tiles).
	attnShortKeys = 512
	attnShortBr   = 48
	attnShortBc   = 64
)

// attnTiles returns the tile size (query rows, keys) for a block of nk keys
// under mask m.
func attnTiles(m *AttnMask, nk int) (br, bc int) {
	if m != nil && m.Causal && nk <= attnShortKeys {
		return attnShortBr, attnShortBc
	}
	return attnBr, attnBc
}

// attnFast reports whether tiles of this problem (tile size tbr × tbc)
// whose width is a multiple of 64 take the micro-kernels.
func attnFast(d, tbr, tbc int) bool {
	return haveAttnMicro && d%64 == 0 && tbr%6 == 0 && tbc%64 == 0
}

// scratchPool recycles the attention primitives' internal buffers (the
// transposed kᵀ and vᵀ, score and probability tiles) across calls: the
// Attention op calls the primitives once per batch element, and fresh
// buffers cost zeroing and page faults on every call. Buffers from the pool
// hold stale values; every user writes before it reads.
var scratchPool sync.Pool // of *[]float32

// getScratch returns a buffer of n floats with unspecified contents.
func getScratch(n int) []float32 {
	if b, ok := scratchPool.Get().(*[]float32); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]float32, n)
}

// putScratch returns b to the pool; the caller must not use it afterwards.
func putScratch(b []float32) {
	if cap(b) > 0 {
		scratchPool.Put(&b)
	}
}

// transposeHeads returns xT and its row stride ld: xT[(hh·d + c)·ld + j] =
// x[j·h·d + hh·d + c], each head's [n, d] slice transposed to [d, n], so
// that rows of kᵀ (and vᵀ) are contiguous for the micro-kernels. ld is n
// rounded up to 16 plus 16, never a power of two: the micro-kernels read 64
// rows of xT at once, and a power-of-two stride would map them all to one
// L1 set. The transposes are the GEMM packers' register-tile ones
// (gemm.Transpose); the other operands (q, k, v, do) are read in place,
// row stride h·d. xT comes from scratchPool: putScratch it when done.
func transposeHeads(x []float32, n, h, d int) ([]float32, int) {
	ld := (n+15)&^15 + 16
	xt := getScratch(h * d * ld) // every element is written (padding columns with zeros)
	parallelFor(h, func(_, hh int) {
		gemm.Transpose(xt[hh*d*ld:(hh+1)*d*ld], x[hh*d:], h*d, n, d, ld)
	})
	return xt, ld
}

// transposeHeadsRef is the naive transposeHeads (the reference of the tests).
func transposeHeadsRef(x []float32, n, h, d int) ([]float32, int) {
	ld := (n+15)&^15 + 16
	xt := make([]float32, h*d*ld)
	for hh := 0; hh < h; hh++ {
		for c := 0; c < d; c++ {
			for j := 0; j < n; j++ {
				xt[(hh*d+c)*ld+j] = x[j*h*d+hh*d+c]
			}
		}
	}
	return xt, ld
}

// tileMatmulNTRows sets s[br×bc] = alpha·a·b_tileᵀ, where a is br×d (row
// stride lda) and bT holds b transposed (d rows of stride ldT) starting at
// the tile's first column; s has row stride bc. Used for q·kᵀ and do·vᵀ.
// Any br works: the last group of fewer than six rows is copied into pad (6·d floats, rows past br zero), so nothing
// past a's last row is read. s must hold roundUp6(br) rows of bc: the
// extra rows get zeros (pad rows) and are never read as probabilities.
func tileMatmulNTRows(br, bc, d int, alpha float32, a []float32, lda int, bT []float32, ldT int, s, pad []float32) {
	for rb := 0; rb < br; rb += 6 {
		ap, la := &a[rb*lda], lda
		if n := br - rb; n < 6 {
			for i := 0; i < 6; i++ {
				row := pad[i*d : (i+1)*d]
				if i < n {
					copy(row, a[(rb+i)*lda:][:d])
				} else {
					clear(row)
				}
			}
			ap, la = &pad[0], d
		}
		for cu := 0; cu < bc; cu += 64 {
			attnMicroN(d, ap, la, &bT[cu], ldT, &s[rb*bc+cu], bc, alpha, 0)
		}
	}
}

// microAcc runs attnMicroN (trans false) or attnMicroT (trans true) on a
// 6×64 tile of C and ACCUMULATES its first rows (<= 6) rows into c (row
// stride ldc): all six in place, fewer through the scratch tile (6·64
// floats), so that no row of c past rows is touched. The operand reads
// past the last row or column stay inside the caller's scratch buffers.
func microAcc(trans bool, k int, a *float32, lda int, b *float32, ldb int, c []float32, ldc int, alpha float32, rows int, tile []float32) {
	micro := attnMicroN
	if trans {
		micro = attnMicroT
	}
	if rows == 6 {
		micro(k, a, lda, b, ldb, &c[0], ldc, alpha, 1)
		return
	}
	micro(k, a, lda, b, ldb, &tile[0], 64, alpha, 0)
	for i := 0; i < rows; i++ {
		addTo(c[i*ldc:][:64], tile[i*64:][:64])
	}
}

type tileKind uint8

const (
	tileSkip    tileKind = iota // every pair masked
	tileFull                    // every pair allowed
	tilePartial                 // check each pair
)

// tileStats summarises the positions and segments of each tile so that
// whole tiles can be skipped (above the causal diagonal, across segments)
// or computed without per-pair checks.
type tileStats struct {
	minPos, maxPos, minSeg, maxSeg []int32
	ascending                      []bool // positions non-decreasing within the tile (the causal mask of a row is then a suffix)
}

func newTileStats(pos, segs []int32, n, bs int) tileStats {
	nt := (n + bs - 1) / bs
	s := tileStats{make([]int32, nt), make([]int32, nt), make([]int32, nt), make([]int32, nt), make([]bool, nt)}
	for t := 0; t < nt; t++ {
		lo, hi := t*bs, min(n, (t+1)*bs)
		s.minPos[t], s.maxPos[t] = math.MaxInt32, math.MinInt32
		s.minSeg[t], s.maxSeg[t] = math.MaxInt32, math.MinInt32
		s.ascending[t] = pos != nil
		for i := lo; i < hi; i++ {
			if pos != nil {
				s.minPos[t] = min(s.minPos[t], pos[i])
				s.maxPos[t] = max(s.maxPos[t], pos[i])
				if i > lo && pos[i] < pos[i-1] {
					s.ascending[t] = false
				}
			}
			sg := seg(segs, i)
			s.minSeg[t] = min(s.minSeg[t], sg)
			s.maxSeg[t] = max(s.maxSeg[t], sg)
		}
	}
	return s
}

type maskTiles struct {
	m      *AttnMask
	qs, ks tileStats
}

func newMaskTiles(m *AttnMask, nq, nk, tbr, tbc int) *maskTiles {
	if m == nil {
		return nil
	}
	mt := &maskTiles{m: m}
	var qp, kp []int32
	if m.Causal {
		qp, kp = m.QPos, m.KPos
	}
	mt.qs = newTileStats(qp, m.QSeg, nq, tbr)
	mt.ks = newTileStats(kp, m.KSeg, nk, tbc)
	return mt
}

func (mt *maskTiles) kind(qt, kt int) tileKind {
	if mt == nil {
		return tileFull
	}
	q, k := &mt.qs, &mt.ks
	if q.maxSeg[qt] < k.minSeg[kt] || k.maxSeg[kt] < q.minSeg[qt] {
		return tileSkip
	}
	oneSeg := q.minSeg[qt] == q.maxSeg[qt] && k.minSeg[kt] == k.maxSeg[kt] && q.minSeg[qt] == k.minSeg[kt]
	if !mt.m.Causal {
		if oneSeg {
			return tileFull
		}
		return tilePartial
	}
	p := mt.m.Prefix
	if k.minPos[kt] > q.maxPos[qt] && k.minPos[kt] >= p {
		return tileSkip
	}
	if oneSeg && (k.maxPos[kt] <= q.minPos[qt] || k.maxPos[kt] < p) {
		return tileFull
	}
	return tilePartial
}

// maskTile sets the disallowed entries of the br×bc score tile s to −Inf.
// j0 is the first key of key tile kt.
func (mt *maskTiles) maskTile(s []float32, i0, br, j0, bc, kt int) {
	ninf := float32(math.Inf(-1))
	m := mt.m
	if m.Causal && m.QSeg == nil && m.KSeg == nil && mt.ks.ascending[kt] {
		// Positions ascend along the key tile, so the keys a query may not
		// see (kp > max(qp, Prefix−1)) are a suffix of its row.
		kpos := m.KPos[j0 : j0+bc]
		for r := 0; r < br; r++ {
			thr := max(m.QPos[i0+r], m.Prefix-1)
			lo, hi := 0, bc // first c with kpos[c] > thr
			for lo < hi {
				mid := int(uint(lo+hi) >> 1)
				if kpos[mid] > thr {
					hi = mid
				} else {
					lo = mid + 1
				}
			}
			row := s[r*bc+lo : (r+1)*bc]
			for c := range row {
				row[c] = ninf
			}
		}
		return
	}
	for r := 0; r < br; r++ {
		row := s[r*bc : (r+1)*bc]
		if m.QSeg != nil || m.KSeg != nil {
			qs := seg(m.QSeg, i0+r)
			for c := range row {
				if seg(m.KSeg, j0+c) != qs {
					row[c] = ninf
				}
			}
		}
		if m.Causal {
			qp, kpos := m.QPos[i0+r], m.KPos[j0:j0+bc]
			for c, kp := range kpos {
				if kp > qp && kp >= m.Prefix {
					row[c] = ninf
				}
			}
		}
	}
}

// AttnBlockForward computes the softmax-normalised attention of the query
// block over this one key block: o = softmax(scale·q·kᵀ + mask)·v, and lse =
// log-sum-exp of the masked scaled scores per (row, head). A row with no
// allowed key gets o = 0 and lse = −Inf. m may be nil (full attention). o
// and lse are overwritten.
//
// It runs flash-style: 96×192 score tiles (48×64 for a causal block of at
// most 512 keys, see attnTiles) with an online softmax, never more
// than one tile of scores per worker, in parallel over (head, query tile).
func AttnBlockForward(q, k, v []float32, nq, nk, h, d int, scale float32, m *AttnMask, o, lse []float32) {
	const op = "AttnBlockForward"
	checkAttnDims(op, nq, nk, h, d)
	hd := h * d
	checkAttnBuf(op, "q", q, nq*hd)
	checkAttnBuf(op, "k", k, nk*hd)
	checkAttnBuf(op, "v", v, nk*hd)
	checkAttnBuf(op, "o", o, nq*hd)
	checkAttnBuf(op, "lse", lse, nq*h)
	m.check(op, nq, nk)
	tbr, tbc := attnTiles(m, nk)
	mt := newMaskTiles(m, nq, nk, tbr, tbc)
	nqt, nkt := (nq+tbr-1)/tbr, (nk+tbc-1)/tbc
	items := h * nqt
	fast := attnFast(d, tbr, tbc)
	var kT []float32
	ldT := 0
	if fast {
		kT, ldT = transposeHeads(k, nk, h, d)
	}
	type scratch struct{ s, acc, mrow, l, pad []float32 }
	ws := make([]scratch, workersFor(items))
	ninf := float32(math.Inf(-1))
	parallelFor(items, func(w, item int) {
		sc := &ws[w]
		if sc.s == nil {
			*sc = scratch{getScratch(tbr * tbc), make([]float32, tbr*d), make([]float32, tbr), make([]float32, tbr), make([]float32, 6*d)}
		}
		hh, qt := item/nqt, item%nqt
		i0 := qt * tbr
		br := min(tbr, nq-i0)
		acc, mrow, l := sc.acc[:br*d], sc.mrow[:br], sc.l[:br]
		for i := range acc {
			acc[i] = 0
		}
		for r := range mrow {
			mrow[r], l[r] = ninf, 0
		}
		qi := q[i0*hd+hh*d:]
		for kt := 0; kt < nkt; kt++ {
			kind := mt.kind(qt, kt)
			if kind == tileSkip {
				continue
			}
			j0 := kt * tbc
			bc := min(tbc, nk-j0)
			s := sc.s[:br*bc]
			// The micro-kernels take any tile whose width is a multiple
			// of 64 (the last rows of a short query tile run padded).
			micro := fast && bc%64 == 0
			if micro {
				tileMatmulNTRows(br, bc, d, scale, qi, hd, kT[hh*d*ldT+j0:], ldT, sc.s, sc.pad)
			} else {
				sgemm(false, true, br, bc, d, scale, qi, hd, k[j0*hd+hh*d:], hd, 0, s, bc)
			}
			if kind == tilePartial {
				mt.maskTile(s, i0, br, j0, bc, kt)
			}
			for r := 0; r < br; r++ {
				row := s[r*bc : (r+1)*bc]
				mx := rowMax(row, mrow[r])
				if mx == ninf { // nothing allowed yet: p = 0
					for c := range row {
						row[c] = 0
					}
					continue
				}
				sum := expSubRow(row, mx)
				if f := expf(mrow[r] - mx); f != 1 {
					l[r] *= f
					ar := acc[r*d : (r+1)*d]
					for c := range ar {
						ar[c] *= f
					}
				}
				l[r] += sum
				mrow[r] = mx
			}
			if micro {
				// Rows past br (the last group of a short tile) read the
				// zero rows of sc.s and add 0 to spare rows of sc.acc.
				for rb := 0; rb < br; rb += 6 {
					for dc := 0; dc < d; dc += 64 {
						attnMicroN(bc, &sc.s[rb*bc], bc, &v[j0*hd+hh*d+dc], hd, &sc.acc[rb*d+dc], d, 1, 1)
					}
				}
			} else {
				sgemm(false, false, br, d, bc, 1, s, bc, v[j0*hd+hh*d:], hd, 1, acc, d)
			}
		}
		for r := 0; r < br; r++ {
			orow := o[(i0+r)*hd+hh*d:][:d]
			if l[r] == 0 {
				for c := range orow {
					orow[c] = 0
				}
				lse[(i0+r)*h+hh] = ninf
				continue
			}
			inv := 1 / l[r]
			for c, a := range acc[r*d : (r+1)*d] {
				orow[c] = a * inv
			}
			lse[(i0+r)*h+hh] = mrow[r] + float32(math.Log(float64(l[r])))
		}
	})
	for _, sc := range ws {
		putScratch(sc.s)
	}
	putScratch(kT)
}

// AttnMerge folds the partial (o2, lse2) over a disjoint key set into (o,
// lse), in place: lse' = logaddexp(lse, lse2); o' = o·exp(lse−lse') +
// o2·exp(lse2−lse'); −Inf on either side (no allowed key) is handled.
func AttnMerge(o, lse, o2, lse2 []float32, nq, h, d int) {
	const op = "AttnMerge"
	checkAttnBuf(op, "o", o, nq*h*d)
	checkAttnBuf(op, "o2", o2, nq*h*d)
	checkAttnBuf(op, "lse", lse, nq*h)
	checkAttnBuf(op, "lse2", lse2, nq*h)
	for i := 0; i < nq*h; i++ {
		a, b := float64(lse[i]), float64(lse2[i])
		if math.IsInf(b, -1) {
			continue
		}
		or, o2r := o[i*d:(i+1)*d], o2[i*d:(i+1)*d]
		if math.IsInf(a, -1) {
			copy(or, o2r)
			lse[i] = lse2[i]
			continue
		}
		mx := math.Max(a, b)
		n := mx + math.Log(math.Exp(a-mx)+math.Exp(b-mx))
		fa, fb := float32(math.Exp(a-n)), float32(math.Exp(b-n))
		for c := range or {
			or[c] = or[c]*fa + o2r[c]*fb
		}
		lse[i] = float32(n)
	}
}

// AttnDelta writes delta[i,h] = Σ_d do[i,h,d]·o[i,h,d] (o is the FINAL
// merged output).
func AttnDelta(o, do []float32, nq, h, d int, delta []float32) {
	checkAttnBuf("AttnDelta", "o", o, nq*h*d)
	checkAttnBuf("AttnDelta", "do", do, nq*h*d)
	checkAttnBuf("AttnDelta", "delta", delta, nq*h)
	for i := 0; i < nq*h; i++ {
		var s float32
		a, b := o[i*d:(i+1)*d], do[i*d:(i+1)*d]
		for c := range a {
			s += a[c] * b[c]
		}
		delta[i] = s
	}
}

// AttnBlockBackward ACCUMULATES (+=) this key block's contribution to dq, dk
// and dv, recomputing p = exp(scale·q·kᵀ − lse) with the FINAL lse of the
// full row; ds = p∘(do·vᵀ − delta), dq += scale·ds·k, dk += scale·dsᵀ·q,
// dv += pᵀ·do.
//
// Work is split over (head, key tile), so each worker owns its dk and dv
// rows; dq is accumulated in one private buffer per worker and summed at
// the end, in worker order. The items are assigned to the workers by a
// fixed schedule (parallelForStatic), so the result is bit-reproducible
// run to run (with items handed out dynamically, which worker's buffer a
// tile's dq landed in, and so the summation order, varied with timing).
func AttnBlockBackward(q, k, v, do, lse, delta []float32, nq, nk, h, d int, scale float32, m *AttnMask, dq, dk, dv []float32) {
	const op = "AttnBlockBackward"
	checkAttnDims(op, nq, nk, h, d)
	hd := h * d
	for _, b := range []struct {
		name string
		buf  []float32
		n    int
	}{{"q", q, nq * hd}, {"k", k, nk * hd}, {"v", v, nk * hd}, {"do", do, nq * hd}, {"lse", lse, nq * h},
		{"delta", delta, nq * h}, {"dq", dq, nq * hd}, {"dk", dk, nk * hd}, {"dv", dv, nk * hd}} {
		checkAttnBuf(op, b.name, b.buf, b.n)
	}
	m.check(op, nq, nk)
	tbr, tbc := attnTiles(m, nk)
	mt := newMaskTiles(m, nq, nk, tbr, tbc)
	nqt, nkt := (nq+tbr-1)/tbr, (nk+tbc-1)/tbc
	items := h * nkt
	nw := workersFor(items)
	fast := attnFast(d, tbr, tbc)
	var kT, vT []float32
	ldT := 0
	if fast {
		kT, ldT = transposeHeads(k, nk, h, d)
		vT, _ = transposeHeads(v, nk, h, d)
	}
	type scratch struct{ p, dp, dq, pad, tile []float32 }
	ws := make([]scratch, nw)
	parallelForStatic(items, func(w, item int) {
		sc := &ws[w]
		if sc.p == nil {
			// p and dp get spare floats: the last 6-column group of a tile
			// whose width is not a multiple of 6 reads up to 5 past the end.
			sc.p, sc.dp = getScratch(tbr*tbc+8), getScratch(tbr*tbc+8)
			sc.pad, sc.tile = make([]float32, 6*d), make([]float32, 6*64)
			if nw == 1 {
				sc.dq = dq
			} else {
				sc.dq = make([]float32, nq*hd)
			}
		}
		hh, kt := item/nkt, item%nkt
		j0 := kt * tbc
		bc := min(tbc, nk-j0)
		kj, vj := k[j0*hd+hh*d:], v[j0*hd+hh*d:]
		dkj, dvj := dk[j0*hd+hh*d:], dv[j0*hd+hh*d:]
		for qt := 0; qt < nqt; qt++ {
			kind := mt.kind(qt, kt)
			if kind == tileSkip {
				continue
			}
			i0 := qt * tbr
			br := min(tbr, nq-i0)
			qi, doi := q[i0*hd+hh*d:], do[i0*hd+hh*d:]
			p, dp := sc.p[:br*bc], sc.dp[:br*bc]
			micro := fast && bc%64 == 0 // as in AttnBlockForward
			if micro {
				tileMatmulNTRows(br, bc, d, scale, qi, hd, kT[hh*d*ldT+j0:], ldT, sc.p, sc.pad)
			} else {
				sgemm(false, true, br, bc, d, scale, qi, hd, kj, hd, 0, p, bc)
			}
			if kind == tilePartial {
				mt.maskTile(p, i0, br, j0, bc, kt)
			}
			for r := 0; r < br; r++ {
				row := p[r*bc : (r+1)*bc]
				ls := lse[(i0+r)*h+hh]
				if math.IsInf(float64(ls), -1) {
					for c := range row {
						row[c] = 0
					}
					continue
				}
				expSubRow(row, ls)
			}
			// dv += pᵀ·do ; dp = do·vᵀ ; ds = p∘(dp − delta) ; dk += scale·dsᵀ·q ; dq += scale·ds·k
			if micro {
				for cb := 0; cb < bc; cb += 6 {
					for dc := 0; dc < d; dc += 64 {
						microAcc(true, br, &sc.p[cb], bc, &doi[dc], hd, dvj[cb*hd+dc:], hd, 1, min(6, bc-cb), sc.tile)
					}
				}
				tileMatmulNTRows(br, bc, d, 1, doi, hd, vT[hh*d*ldT+j0:], ldT, sc.dp, sc.pad)
			} else {
				sgemm(true, false, bc, d, br, 1, p, bc, doi, hd, 1, dvj, hd)
				sgemm(false, true, br, bc, d, 1, doi, hd, vj, hd, 0, dp, bc)
			}
			for r := 0; r < br; r++ {
				dl := delta[(i0+r)*h+hh]
				dsRow(p[r*bc:(r+1)*bc], dp[r*bc:(r+1)*bc], dl)
			}
			if micro {
				for cb := 0; cb < bc; cb += 6 {
					for dc := 0; dc < d; dc += 64 {
						microAcc(true, br, &sc.dp[cb], bc, &qi[dc], hd, dkj[cb*hd+dc:], hd, scale, min(6, bc-cb), sc.tile)
					}
				}
				dqi := sc.dq[i0*hd+hh*d:]
				for rb := 0; rb < br; rb += 6 {
					for dc := 0; dc < d; dc += 64 {
						microAcc(false, bc, &sc.dp[rb*bc], bc, &kj[dc], hd, dqi[rb*hd+dc:], hd, scale, min(6, br-rb), sc.tile)
					}
				}
			} else {
				sgemm(true, false, bc, d, br, scale, dp, bc, qi, hd, 1, dkj, hd)
				sgemm(false, false, br, d, bc, scale, dp, bc, kj, hd, 1, sc.dq[i0*hd+hh*d:], hd)
			}
		}
	})
	for _, sc := range ws {
		putScratch(sc.p)
		putScratch(sc.dp)
	}
	putScratch(kT)
	putScratch(vT)
	if nw > 1 {
		parallelFor(nw, func(_, part int) {
			lo, hi := part*len(dq[:nq*hd])/nw, (part+1)*len(dq[:nq*hd])/nw
			for _, sc := range ws {
				if sc.dq == nil {
					continue
				}
				for i := lo; i < hi; i++ {
					dq[i] += sc.dq[i]
				}
			}
		})
	}
}
