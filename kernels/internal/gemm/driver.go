package gemm

import (
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

// kernel is a micro-kernel with the blocking that suits it.
type kernel struct {
	name   string
	mr, nr int // register tile
	mc, kc int // A~ block in L2 is mc×kc; mc is a multiple of mr
	nc     int // B~ block is kc×nc; nc is a multiple of nr
	micro  microFunc

	pool sync.Pool // *workspace sized for this kernel
}

// workspace holds one goroutine's packing buffers, 64-byte aligned.
type workspace struct {
	a    []float32 // mc×kc
	b    []float32 // kc×nc
	tile []float32 // mr×nr scratch for edge tiles
}

func (kern *kernel) getWorkspace() *workspace {
	if w, ok := kern.pool.Get().(*workspace); ok {
		return w
	}
	na, nb, nt := kern.mc*kern.kc, kern.kc*kern.nc, kern.mr*kern.nr
	const pad = 16 // floats, 64 bytes
	buf := make([]float32, na+nb+nt+3*pad)
	off := 0
	take := func(n int) []float32 {
		// Advance off to the next 64-byte boundary.
		addr := uintptr(unsafe.Pointer(&buf[off]))
		off += int((64-addr%64)%64) / 4
		s := buf[off : off+n : off+n]
		off += n
		return s
	}
	return &workspace{a: take(na), b: take(nb), tile: take(nt)}
}

// region is the part of C one goroutine computes: rows [i0, i1), columns [j0, j1).
type region struct{ i0, i1, j0, j1 int }

// compute runs the blocked algorithm on region r of p.
func compute(kern *kernel, p *problem, r region) {
	w := kern.getWorkspace()
	defer kern.pool.Put(w)
	mr, nr := kern.mr, kern.nr
	for jc := r.j0; jc < r.j1; jc += kern.nc {
		nc := min(kern.nc, r.j1-jc)
		for pc := 0; pc < p.k; pc += kern.kc {
			kc := min(kern.kc, p.k-pc)
			packB(w.b, p, pc, jc, kc, nc, nr)
			beta := p.beta
			if pc > 0 {
				beta = 1
			}
			for ic := r.i0; ic < r.i1; ic += kern.mc {
				mc := min(kern.mc, r.i1-ic)
				packA(w.a, p, ic, pc, mc, kc, mr)
				for jr := 0; jr < nc; jr += nr {
					cols := min(nr, nc-jr)
					bp := &w.b[jr*kc]
					for ir := 0; ir < mc; ir += mr {
						rows := min(mr, mc-ir)
						ap := &w.a[ir*kc]
						ci := (ic+ir)*p.ldc + jc + jr
						if rows == mr && cols == nr {
							kern.micro(kc, ap, bp, &p.c[ci], p.ldc, p.alpha, beta)
							continue
						}
						kern.micro(kc, ap, bp, &w.tile[0], nr, 1, 0)
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
	for ir := 0; ir < mc; ir += mr {
		rows := min(mr, mc-ir)
		panel := dst[ir*kc : ir*kc+mr*kc]
		if pr.transA {
			// op(A)[i][p] = A[p][i]: each k step is a contiguous run of A's row p.
			for p := 0; p < kc; p++ {
				d := panel[p*mr : p*mr+mr]
				copy(d, a[(p0+p)*lda+i0+ir:][:rows])
				clear(d[rows:])
			}
			continue
		}
		for i := 0; i < rows; i++ {
			src := a[(i0+ir+i)*lda+p0:][:kc]
			for p, v := range src {
				panel[p*mr+i] = v
			}
		}
		for i := rows; i < mr; i++ {
			for p := 0; p < kc; p++ {
				panel[p*mr+i] = 0
			}
		}
	}
}

// packB packs op(B)[p0:p0+kc, j0:j0+nc] into dst as ceil(nc/nr) micro-panels of
// kc×nr, each k-major (panel[p*nr+j]); columns past nc are zero.
func packB(dst []float32, pr *problem, p0, j0, kc, nc, nr int) {
	b, ldb := pr.b, pr.ldb
	for jr := 0; jr < nc; jr += nr {
		cols := min(nr, nc-jr)
		panel := dst[jr*kc : jr*kc+nr*kc]
		if !pr.transB {
			for p := 0; p < kc; p++ {
				d := panel[p*nr : p*nr+nr]
				copy(d, b[(p0+p)*ldb+j0+jr:][:cols])
				clear(d[cols:])
			}
			continue
		}
		// op(B)[p][j] = B[j][p]: each column j of the panel is a contiguous row of B.
		for j := 0; j < cols; j++ {
			src := b[(j0+jr+j)*ldb+p0:][:kc]
			for p, v := range src {
				panel[p*nr+j] = v
			}
		}
		for j := cols; j < nr; j++ {
			for p := 0; p < kc; p++ {
				panel[p*nr+j] = 0
			}
		}
	}
}

// split divides the m×n output into at most threads regions for kern. Each region
// boundary falls on a micro-tile boundary. It picks the grid (tm row bands × tn column
// bands) whose largest region has the lowest estimated cost: compute (rows·cols·k at
// about 32 multiply-adds a cycle) plus packing (the region's A rows once per NC column
// block and its B columns once).
func split(kern *kernel, m, n, k, threads int) []region {
	// Below about 64³ multiply-adds, starting goroutines costs more than it saves.
	const minWork = 64 * 64 * 64
	if threads <= 1 || m*n*k < 2*minWork {
		return []region{{0, m, 0, n}}
	}
	threads = min(threads, m*n*k/minWork)
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
		nBlocks := float64((int(cols) + kern.nc - 1) / kern.nc)
		cost := rows*cols*float64(k)/32 + (rows*nBlocks+cols)*float64(k)
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
