package gemm

import (
	"fmt"
	"sync"
	"unsafe"
)

// microFunc is the micro-kernel contract. a points at an MR×kc packed A micro-panel
// (k-major: a[p*MR+i] = op(A)[i][p]) and b at a kc×NR packed B micro-panel
// (b[p*NR+j] = op(B)[p][j]); both hold kc >= 1 full steps. The kernel computes the
// MR×NR tile acc = Σ_p a[p*MR+i]·b[p*NR+j] and stores C[i*ldc+j] = alpha·acc + beta·C,
// without reading C when beta == 0. c points at C[0][0] of the tile; the whole MR×NR
// tile must be addressable with row stride ldc.
type microFunc func(kc int, a, b, c *float32, ldc int, alpha, beta float32)

// kernel is a micro-kernel with the blocking that suits it (see compute).
type kernel struct {
	name   string
	mr, nr int // register tile
	mc, kc int // A~ block, packed once per K panel: mc×kc; mc is a multiple of mr
	nc     int // B~ block, in L2: kc×nc; nc is a multiple of nr
	micro  microFunc
	// edges are optional kernels for fewer rows than mr (ascending rows), reading
	// the same mr-row A panels; the last row band of C uses the smallest that fits.
	edges []edgeKernel

	pool sync.Pool // *workspace sized for this kernel
}

// edgeKernel is a micro-kernel for the first rows (< mr) of an mr-row A panel:
// microFunc's contract with MR = rows.
type edgeKernel struct {
	rows  int
	micro microFunc
}

// forRows returns the kernel and its row count for a band of rows <= mr rows.
func (kern *kernel) forRows(rows int) (microFunc, int) {
	for _, e := range kern.edges {
		if rows <= e.rows {
			return e.micro, e.rows
		}
	}
	return kern.micro, kern.mr
}

// workspace holds one goroutine's packing buffers, each 64-byte aligned. The
// buffers are sized for the largest blocks seen so far, so a small product does
// not pay for the full mc×kc and kc×nc blocks.
type workspace struct {
	buf  []float32
	a    []float32 // packed A~ block, up to mc×kc
	b    []float32 // packed B~ block, up to kc×nc
	tile []float32 // mr×nr scratch for edge tiles
}

// getWorkspace returns a workspace with room for an na-float A~ block and an
// nb-float B~ block. Return it with kern.pool.Put.
func (kern *kernel) getWorkspace(na, nb int) *workspace {
	w, _ := kern.pool.Get().(*workspace)
	if w == nil {
		w = &workspace{}
	}
	nt := kern.mr * kern.nr
	if len(w.a) >= na && len(w.b) >= nb && len(w.tile) >= nt {
		return w
	}
	na, nb = max(na, len(w.a)), max(nb, len(w.b))
	const pad = 16 // floats, 64 bytes
	w.buf = make([]float32, na+nb+nt+3*pad)
	off := 0
	take := func(n int) []float32 {
		// Advance off to the next 64-byte boundary.
		addr := uintptr(unsafe.Pointer(&w.buf[off]))
		off += int((64-addr%64)%64) / 4
		s := w.buf[off : off+n : off+n]
		off += n
		return s
	}
	w.a, w.b, w.tile = take(na), take(nb), take(nt)
	return w
}

// region is the part of C one goroutine computes: rows [i0, i1), columns [j0, j1).
type region struct{ i0, i1, j0, j1 int }

// compute runs the blocked algorithm on region r of p. The loop order is BLIS's
// for Skylake-X with our operands' roles: A (the broadcast side) is packed in large
// mc×kc blocks, B (the vector side) in kc×nc blocks that stay in L2, and one A
// micro-panel (mr×kc) stays in L1 while the B micro-panels stream past it, so
// consecutive micro-kernel calls walk along the rows of C. Measured against the
// textbook order (B micro-panel in L1, A~ in L2) it was 2-9 % faster on the model
// shapes.
func compute(kern *kernel, p *problem, r region) {
	mr, nr := kern.mr, kern.nr
	roundUp := func(x, to int) int { return (x + to - 1) / to * to }
	kcMax := min(kern.kc, p.k)
	w := kern.getWorkspace(min(kern.mc, roundUp(r.i1-r.i0, mr))*kcMax, kcMax*min(kern.nc, roundUp(r.j1-r.j0, nr)))
	defer kern.pool.Put(w)
	for ic := r.i0; ic < r.i1; ic += kern.mc {
		mc := min(kern.mc, r.i1-ic)
		for pc := 0; pc < p.k; pc += kern.kc {
			kc := min(kern.kc, p.k-pc)
			packA(w.a, p, ic, pc, mc, kc, mr)
			beta := p.beta
			if pc > 0 {
				beta = 1
			}
			for jc := r.j0; jc < r.j1; jc += kern.nc {
				nc := min(kern.nc, r.j1-jc)
				packB(w.b, p, pc, jc, kc, nc, nr)
				for ir := 0; ir < mc; ir += mr {
					rows := min(mr, mc-ir)
					micro, kr := kern.forRows(rows)
					ap := &w.a[ir*kc]
					for jr := 0; jr < nc; jr += nr {
						cols := min(nr, nc-jr)
						bp := &w.b[jr*kc]
						ci := (ic+ir)*p.ldc + jc + jr
						if rows == kr && cols == nr {
							micro(kc, ap, bp, &p.c[ci], p.ldc, p.alpha, beta)
							continue
						}
						micro(kc, ap, bp, &w.tile[0], nr, 1, 0)
						mergeTile(p.c[ci:], p.ldc, w.tile, nr, rows, cols, p.alpha, beta)
					}
				}
			}
		}
	}
}

// mergeTile stores C = alpha·T + beta·C for the rows×cols corner of an edge tile T
// with row stride ldt, not reading C when beta == 0.
func mergeTile(c []float32, ldc int, t []float32, ldt, rows, cols int, alpha, beta float32) {
	for i := 0; i < rows; i++ {
		ci := c[i*ldc : i*ldc+cols]
		ti := t[i*ldt : i*ldt+cols]
		if beta == 0 {
			for j := range ci {
				ci[j] = alpha * ti[j]
			}
			continue
		}
		for j := range ci {
			ci[j] = alpha*ti[j] + beta*ci[j]
		}
	}
}

// packA packs op(A)[i0:i0+mc, p0:p0+kc] into dst as ceil(mc/mr) micro-panels of
// mr×kc, each k-major (panel[p*mr+i]); rows past mc are zero.
func packA(dst []float32, pr *problem, i0, p0, mc, kc, mr int) {
	a, lda := pr.a, pr.lda
	if whole := mc / mr; pr.transA && whole > 0 && mr == 12 {
		// As packB: row by row across all whole panels, so that A (dy of a
		// weight gradient, read transposed) streams sequentially (thread
		// CPU of the model's dW GEMMs −5% at M=1024, −14% at M=768, level
		// at M=256).
		copyRowsToPanels(dst, a[p0*lda+i0:], lda, kc, whole, mr)
		if ir := whole * mr; ir < mc {
			copyRows(dst[ir*kc:ir*kc+mr*kc], a[p0*lda+i0+ir:], lda, kc, mc-ir, mr)
		}
		return
	}
	for ir := 0; ir < mc; ir += mr {
		rows := min(mr, mc-ir)
		panel := dst[ir*kc : ir*kc+mr*kc]
		if pr.transA {
			// op(A)[i][p] = A[p][i]: each k step is a contiguous run of A's row p.
			copyRows(panel, a[(p0)*lda+i0+ir:], lda, kc, rows, mr)
		} else {
			// Row i of the panel is a contiguous run of A's row i0+ir+i.
			transposeRows(panel, a[(i0+ir)*lda+p0:], lda, rows, kc, mr)
		}
	}
}

// packB packs op(B)[p0:p0+kc, j0:j0+nc] into dst as ceil(nc/nr) micro-panels of
// kc×nr, each k-major (panel[p*nr+j]); columns past nc are zero.
func packB(dst []float32, pr *problem, p0, j0, kc, nc, nr int) {
	b, ldb := pr.b, pr.ldb
	if whole := nc / nr; !pr.transB && whole > 0 && (nr == 32 || nr == 16) {
		// Row by row across all whole panels: B is read sequentially. Panel
		// by panel, each 64- or 128-byte run is one row stride (often a
		// page) past the last, which the hardware prefetcher does not
		// follow: a cache miss per row, 4% of a training step.
		copyRowsToPanels(dst, b[p0*ldb+j0:], ldb, kc, whole, nr)
		if jr := whole * nr; jr < nc {
			copyRows(dst[jr*kc:jr*kc+nr*kc], b[p0*ldb+j0+jr:], ldb, kc, nc-jr, nr)
		}
		return
	}
	for jr := 0; jr < nc; jr += nr {
		cols := min(nr, nc-jr)
		panel := dst[jr*kc : jr*kc+nr*kc]
		if pr.transB {
			// op(B)[p][j] = B[j][p]: column j of the panel is a contiguous run of B's row j.
			transposeRows(panel, b[(j0+jr)*ldb+p0:], ldb, cols, kc, nr)
		} else {
			copyRows(panel, b[p0*ldb+j0+jr:], ldb, kc, cols, nr)
		}
	}
}

// copyRowsToPanels writes the rows×(panels·nr) matrix src (row stride ld)
// as panels micro-panels of rows×nr, one after another:
// dst[q·rows·nr + r·nr + c] = src[r·ld + q·nr + c]; nr is 12, 16 or 32.
// It reads src row by row.
func copyRowsToPanels(dst, src []float32, ld, rows, panels, nr int) {
	if rows == 0 || panels == 0 {
		return
	}
	if nr == 12 {
		_ = dst[panels*rows*12-1]
		_ = src[(rows-1)*ld+panels*12-1]
		d, s := unsafe.Pointer(&dst[0]), unsafe.Pointer(&src[0])
		for r := 0; r < rows; r++ {
			for q := 0; q < panels; q++ {
				sr, dr := unsafe.Add(s, (r*ld+q*12)*4), unsafe.Add(d, (q*rows+r)*12*4)
				*(*[4]float32)(dr) = *(*[4]float32)(sr)
				*(*[4]float32)(unsafe.Add(dr, 16)) = *(*[4]float32)(unsafe.Add(sr, 16))
				*(*[4]float32)(unsafe.Add(dr, 32)) = *(*[4]float32)(unsafe.Add(sr, 32))
			}
		}
		return
	}
	if nr != 16 && nr != 32 {
		panic(fmt.Sprintf("gemm: copyRowsToPanels: panel width %d", nr))
	}
	_ = dst[panels*rows*nr-1]
	_ = src[(rows-1)*ld+panels*nr-1]
	d, s := unsafe.Pointer(&dst[0]), unsafe.Pointer(&src[0])
	for r := 0; r < rows; r++ {
		for q := 0; q < panels; q++ {
			sr, dr := unsafe.Add(s, (r*ld+q*nr)*4), unsafe.Add(d, (q*rows+r)*nr*4)
			*(*[4]float32)(dr) = *(*[4]float32)(sr)
			*(*[4]float32)(unsafe.Add(dr, 16)) = *(*[4]float32)(unsafe.Add(sr, 16))
			*(*[4]float32)(unsafe.Add(dr, 32)) = *(*[4]float32)(unsafe.Add(sr, 32))
			*(*[4]float32)(unsafe.Add(dr, 48)) = *(*[4]float32)(unsafe.Add(sr, 48))
			if nr == 32 {
				*(*[4]float32)(unsafe.Add(dr, 64)) = *(*[4]float32)(unsafe.Add(sr, 64))
				*(*[4]float32)(unsafe.Add(dr, 80)) = *(*[4]float32)(unsafe.Add(sr, 80))
				*(*[4]float32)(unsafe.Add(dr, 96)) = *(*[4]float32)(unsafe.Add(sr, 96))
				*(*[4]float32)(unsafe.Add(dr, 112)) = *(*[4]float32)(unsafe.Add(sr, 112))
			}
		}
	}
}

// copyRows writes the rows×cols matrix src (row stride ld) into dst with row
// stride w >= cols, zeroing columns cols..w-1: dst[r*w+c] = src[r*ld+c].
func copyRows(dst, src []float32, ld, rows, cols, w int) {
	if rows == 0 {
		return
	}
	_ = dst[rows*w-1]
	_ = src[(rows-1)*ld+cols-1]
	d, s := unsafe.Pointer(&dst[0]), unsafe.Pointer(&src[0])
	switch {
	case cols == 32 && w == 32:
		// 16-byte moves, as for 12 below: a [32]float32 or [16]float32
		// assignment is a runtime.memmove call per row (about 3% of a
		// training step, packing B of every dx = dy·W).
		for r := 0; r < rows; r++ {
			dr, sr := unsafe.Add(d, r*32*4), unsafe.Add(s, r*ld*4)
			*(*[4]float32)(dr) = *(*[4]float32)(sr)
			*(*[4]float32)(unsafe.Add(dr, 16)) = *(*[4]float32)(unsafe.Add(sr, 16))
			*(*[4]float32)(unsafe.Add(dr, 32)) = *(*[4]float32)(unsafe.Add(sr, 32))
			*(*[4]float32)(unsafe.Add(dr, 48)) = *(*[4]float32)(unsafe.Add(sr, 48))
			*(*[4]float32)(unsafe.Add(dr, 64)) = *(*[4]float32)(unsafe.Add(sr, 64))
			*(*[4]float32)(unsafe.Add(dr, 80)) = *(*[4]float32)(unsafe.Add(sr, 80))
			*(*[4]float32)(unsafe.Add(dr, 96)) = *(*[4]float32)(unsafe.Add(sr, 96))
			*(*[4]float32)(unsafe.Add(dr, 112)) = *(*[4]float32)(unsafe.Add(sr, 112))
		}
	case cols == 16 && w == 16:
		for r := 0; r < rows; r++ {
			dr, sr := unsafe.Add(d, r*16*4), unsafe.Add(s, r*ld*4)
			*(*[4]float32)(dr) = *(*[4]float32)(sr)
			*(*[4]float32)(unsafe.Add(dr, 16)) = *(*[4]float32)(unsafe.Add(sr, 16))
			*(*[4]float32)(unsafe.Add(dr, 32)) = *(*[4]float32)(unsafe.Add(sr, 32))
			*(*[4]float32)(unsafe.Add(dr, 48)) = *(*[4]float32)(unsafe.Add(sr, 48))
		}
	case cols == 12 && w == 12:
		// Three 16-byte moves per row: a [12]float32 assignment compiles to
		// a runtime.memmove call, which cost ~5% of a training step (the
		// transposed-A packing of every weight gradient).
		for r := 0; r < rows; r++ {
			dr, sr := unsafe.Add(d, r*12*4), unsafe.Add(s, r*ld*4)
			*(*[4]float32)(dr) = *(*[4]float32)(sr)
			*(*[4]float32)(unsafe.Add(dr, 16)) = *(*[4]float32)(unsafe.Add(sr, 16))
			*(*[4]float32)(unsafe.Add(dr, 32)) = *(*[4]float32)(unsafe.Add(sr, 32))
		}
	case cols == 6 && w == 6:
		for r := 0; r < rows; r++ {
			dr, sr := unsafe.Add(d, r*6*4), unsafe.Add(s, r*ld*4)
			*(*[4]float32)(dr) = *(*[4]float32)(sr)
			*(*[2]float32)(unsafe.Add(dr, 16)) = *(*[2]float32)(unsafe.Add(sr, 16))
		}
	case cols == 4 && w == 4:
		for r := 0; r < rows; r++ {
			*(*[4]float32)(unsafe.Add(d, r*4*4)) = *(*[4]float32)(unsafe.Add(s, r*ld*4))
		}
	default:
		for r := 0; r < rows; r++ {
			copy(dst[r*w:r*w+cols], src[r*ld:r*ld+cols])
			clear(dst[r*w+cols : r*w+w])
		}
	}
}

// transposeRows writes the transpose of the rows×cols matrix src (row stride ld)
// into dst with row stride w >= rows, zeroing dst columns rows..w-1:
// dst[c*w+r] = src[r*ld+c].
func transposeRows(dst, src []float32, ld, rows, cols, w int) {
	if cols == 0 {
		return
	}
	_ = dst[cols*w-1]
	if rows > 0 {
		_ = src[(rows-1)*ld+cols-1]
	}
	if blocks := cols / 16; transpose16 != nil && blocks > 0 {
		// Whole 16-column blocks in 16-row groups; the groups past rows write zeros.
		for g := 0; g < w; g += 16 {
			r := min(max(rows-g, 0), 16)
			s := &src[0]
			if r > 0 {
				s = &src[g*ld]
			}
			transpose16(&dst[g], w, s, ld, r, min(16, w-g), blocks)
		}
		done := blocks * 16
		if done == cols {
			return
		}
		if rows > 0 {
			src = src[done:]
		}
		transposeRowsGo(dst[done*w:], src, ld, rows, cols-done, w)
		return
	}
	if blocks := cols / 8; transpose8 != nil && blocks > 0 {
		// The same with 8×8 blocks and 8-row groups.
		for g := 0; g < w; g += 8 {
			r := min(max(rows-g, 0), 8)
			s := &src[0]
			if r > 0 {
				s = &src[g*ld]
			}
			transpose8(&dst[g], w, s, ld, r, blocks, &laneMasks[min(8, w-g)])
		}
		done := blocks * 8
		if done == cols {
			return
		}
		if rows > 0 {
			src = src[done:]
		}
		transposeRowsGo(dst[done*w:], src, ld, rows, cols-done, w)
		return
	}
	transposeRowsGo(dst, src, ld, rows, cols, w)
}

// transpose8, when not nil and transpose16 is, is transposeRows' AVX2 block
// transpose: for each of blocks 8-column blocks, dst[c*ldd+r] = src[r*lds+c] for
// c < 8 and the r < 8 with mask[r] == -1, source rows r >= rows reading as zero.
var transpose8 func(dst *float32, ldd int, src *float32, lds int, rows, blocks int, mask *[8]int32)

// laneMasks[n] selects the first n of 8 lanes, for transpose8's masked stores.
var laneMasks = func() (m [9][8]int32) {
	for n := range m {
		for i := 0; i < n; i++ {
			m[n][i] = -1
		}
	}
	return m
}()

// transpose16, when not nil, is transposeRows' assembly block transpose:
// for each of blocks 16-column blocks, dst[c*ldd+r] = src[r*lds+c] for c < 16 and
// r < lanes (lanes <= 16), with source rows r >= rows read as zero.
var transpose16 func(dst *float32, ldd int, src *float32, lds int, rows, lanes, blocks int)

// transposeRowsGo is transposeRows in Go; it is also the reference in tests.
func transposeRowsGo(dst, src []float32, ld, rows, cols, w int) {
	if cols == 0 {
		return
	}
	_ = dst[cols*w-1]
	if rows > 0 {
		_ = src[(rows-1)*ld+cols-1]
	}
	d := unsafe.Pointer(&dst[0])
	for r := 0; r < rows; r++ {
		s := unsafe.Pointer(&src[r*ld])
		dr := unsafe.Add(d, r*4)
		c := 0
		for ; c+4 <= cols; c += 4 {
			v := *(*[4]float32)(unsafe.Add(s, c*4))
			*(*float32)(unsafe.Add(dr, c*w*4)) = v[0]
			*(*float32)(unsafe.Add(dr, (c+1)*w*4)) = v[1]
			*(*float32)(unsafe.Add(dr, (c+2)*w*4)) = v[2]
			*(*float32)(unsafe.Add(dr, (c+3)*w*4)) = v[3]
		}
		for ; c < cols; c++ {
			*(*float32)(unsafe.Add(dr, c*w*4)) = *(*float32)(unsafe.Add(s, c*4))
		}
	}
	if rows < w {
		for c := 0; c < cols; c++ {
			clear(dst[c*w+rows : c*w+w])
		}
	}
}

// minWorkPerThread is the fewest multiply-adds worth a goroutine of their own:
// about 10 µs of work at 100 GFLOP/s, several times the cost of starting and
// joining one. Tests lower it to run the threaded split on small shapes.
var minWorkPerThread = 1 << 19

// split divides the m×n output into at most threads regions for kern. Each region
// boundary falls on a micro-tile boundary. It picks the grid (tm row bands × tn column
// bands) whose largest region has the lowest estimated cost: compute (rows·cols·k at
// about 32 multiply-adds a cycle) plus packing (the region's A rows once and its B
// columns once per MC row block).
func split(kern *kernel, m, n, k, threads int) []region {
	if threads <= 1 || m*n*k < 2*minWorkPerThread {
		return []region{{0, m, 0, n}}
	}
	threads = min(threads, m*n*k/minWorkPerThread)
	bm := (m + kern.mr - 1) / kern.mr // micro-tile rows
	bn := (n + kern.nr - 1) / kern.nr
	bestTm, bestTn, bestCost := 1, 1, -1.0
	for tm := 1; tm <= threads; tm++ {
		tn := threads / tm
		if tm > bm || tn > bn {
			continue
		}
		rows := float64(min(m, (bm+tm-1)/tm*kern.mr))
		cols := float64(min(n, (bn+tn-1)/tn*kern.nr))
		bPacks := float64((int(rows) + kern.mc - 1) / kern.mc) // B is packed once per A block
		cost := rows*cols*float64(k)/32 + (rows+cols*bPacks)*float64(k)
		if bestCost < 0 || cost < bestCost {
			bestTm, bestTn, bestCost = tm, tn, cost
		}
	}
	regions := make([]region, 0, bestTm*bestTn)
	for a := 0; a < bestTm; a++ {
		i0, i1 := min(m, a*bm/bestTm*kern.mr), min(m, (a+1)*bm/bestTm*kern.mr)
		for b := 0; b < bestTn; b++ {
			j0, j1 := min(n, b*bn/bestTn*kern.nr), min(n, (b+1)*bn/bestTn*kern.nr)
			if i0 < i1 && j0 < j1 {
				regions = append(regions, region{i0, i1, j0, j1})
			}
		}
	}
	return regions
}
