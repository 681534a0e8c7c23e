package kernels

import (
	"fmt"
	"math"

	"github.com/loomtrain/loom/kernels/internal/device"
)

// The device implementations of the movement ops (Permute, Concat, Slice,
// IndexSelect, Gather, Im2Col), SumAxis, RoPE, Dropout, Attention and
// InterpolateBicubic. The movement ops are index maps computed on the host
// with the same loops as the CPU's: the forward gathers through one
// (backend IndexCopy), the backward scatters back, through the inverse map
// when the gather is injective and through segment sums (backend SegSum,
// no atomics, in the CPU's order) when indices repeat.

// uploadIdx puts int32 indices on be.
func uploadIdx(be device.Backend, idx []int32) device.Buffer {
	b := be.Alloc(max(len(idx), 1))
	be.UploadInt32(b, idx)
	return b
}

// scatterPlan is the backward of out[i] = src[idx[i]] (idx[i] < 0: zero):
// dsrc[j] += Σ_{i: idx[i] = j} dout[i].
type scatterPlan struct {
	m         int // source elements
	injective bool
	from, to  []int32 // injective: dsrc[to[k]] += dout[from[k]]
	offs      []int32 // otherwise: CSR over the sources
	list      []int32
}

func newScatterPlan(idx []int32, m int) scatterPlan {
	counts := make([]int32, m+1)
	inj := true
	for _, j := range idx {
		if j < 0 {
			continue
		}
		counts[j+1]++
		if counts[j+1] > 1 {
			inj = false
		}
	}
	p := scatterPlan{m: m, injective: inj}
	if inj {
		for i, j := range idx {
			if j >= 0 {
				p.from, p.to = append(p.from, int32(i)), append(p.to, j)
			}
		}
		return p
	}
	for j := 0; j < m; j++ {
		counts[j+1] += counts[j]
	}
	p.offs = counts
	p.list = make([]int32, counts[m])
	next := append([]int32(nil), counts[:m]...)
	for i, j := range idx {
		if j >= 0 {
			p.list[next[j]] = int32(i)
			next[j]++
		}
	}
	return p
}

// run accumulates scale·(the scatter of from) into to.
func (p scatterPlan) run(be device.Backend, scale float32, from, to device.Buffer) {
	if p.injective {
		if len(p.from) == 0 {
			return
		}
		be.IndexCopy(len(p.from), scale, true, view(from, 0), uploadIdx(be, p.from), uploadIdx(be, p.to), view(to, 0))
		return
	}
	be.SegSum(p.m, scale, true, from, uploadIdx(be, p.offs), uploadIdx(be, p.list), to)
}

// gatherDev is out[i] = a[idx[i]] (0 where idx[i] < 0) on a device, with
// its scatter-add backward.
func (tp *Tape) gatherDev(op string, a *Tensor, shape []int, idx []int32) *Tensor {
	be, spec := onDevice(op, a)
	out := newOnDevice(be, spec, shape)
	if len(idx) > 0 {
		be.IndexCopy(len(idx), 1, false, view(a.d.data, 0), uploadIdx(be, idx), nil, view(out.d.data, 0))
	}
	tp.record(op, out, func() {
		if len(idx) > 0 {
			newScatterPlan(idx, a.d.n).run(be, 1, out.d.grad, a.devGrad())
		}
	}, a)
	return out
}

// permuteIdx is the source index of every element of a's permutation.
func permuteIdx(shape, perm []int) []int32 {
	nd := len(shape)
	strides := make([]int, nd)
	s := 1
	for d := nd - 1; d >= 0; d-- {
		strides[d] = s
		s *= shape[d]
	}
	oshape := make([]int, nd)
	for d, p := range perm {
		oshape[d] = shape[p]
	}
	n := numel(oshape)
	idx := make([]int32, 0, n)
	if n == 0 {
		return idx
	}
	pos := make([]int, nd)
	for {
		src := 0
		for d := range pos {
			src += pos[d] * strides[perm[d]]
		}
		idx = append(idx, int32(src))
		d := nd - 1
		for ; d >= 0; d-- {
			pos[d]++
			if pos[d] < oshape[d] {
				break
			}
			pos[d] = 0
		}
		if d < 0 {
			return idx
		}
	}
}

// axisIdx is the source index of out[o, i, r] = a[o, pick(i), r] for a
// split around an axis (outer, n, inner) with k output entries per outer.
func axisIdx(outer, n, inner, k int, pick func(o, i, r int) int) []int32 {
	idx := make([]int32, 0, outer*k*inner)
	for o := 0; o < outer; o++ {
		for i := 0; i < k; i++ {
			for r := 0; r < inner; r++ {
				idx = append(idx, int32((o*n+pick(o, i, r))*inner+r))
			}
		}
	}
	return idx
}

// concatDev is Concat on a device: each input is scattered into its place
// (an injective map), and its gradient gathered back.
func (tp *Tape) concatDev(ts []*Tensor, shape []int, outer, inner, ax int) *Tensor {
	ts = append([]*Tensor(nil), ts...)
	ps := make([]**Tensor, len(ts))
	for i := range ts {
		ps[i] = &ts[i]
	}
	be, spec := place("Concat", ps...)
	out := newOnDevice(be, spec, shape)
	total := shape[ax]
	dsts := make([]device.Buffer, len(ts))
	off := 0
	for ti, t := range ts {
		w := t.Shape[ax] * inner
		dst := make([]int32, 0, outer*w)
		for o := 0; o < outer; o++ {
			for i := 0; i < w; i++ {
				dst = append(dst, int32(o*total*inner+off+i))
			}
		}
		off += w
		if len(dst) > 0 {
			dsts[ti] = uploadIdx(be, dst)
			be.IndexCopy(len(dst), 1, false, view(t.d.data, 0), nil, dsts[ti], view(out.d.data, 0))
		}
	}
	tp.record("Concat", out, func() {
		for ti, t := range ts {
			if wants(t) && dsts[ti] != nil {
				be.IndexCopy(t.d.n, 1, true, view(out.d.grad, 0), dsts[ti], nil, view(t.devGrad(), 0))
			}
		}
	}, ts...)
	return out
}

// sumAxisDev is SumAxis on a device: segment sums over the axis.
func (tp *Tape) sumAxisDev(a *Tensor, shape []int, outer, n, inner int) *Tensor {
	be, spec := onDevice("SumAxis", a)
	out := newOnDevice(be, spec, shape)
	m := outer * inner
	offs := make([]int32, m+1)
	list := make([]int32, 0, outer*n*inner)
	src := make([]int32, outer*n*inner) // the output element of every input
	for o := 0; o < outer; o++ {
		for r := 0; r < inner; r++ {
			j := o*inner + r
			for i := 0; i < n; i++ {
				e := (o*n+i)*inner + r
				list = append(list, int32(e))
				src[e] = int32(j)
			}
			offs[j+1] = int32(len(list))
		}
	}
	if m > 0 {
		be.SegSum(m, 1, false, a.d.data, uploadIdx(be, offs), uploadIdx(be, list), out.d.data)
	}
	tp.record("SumAxis", out, func() {
		if len(src) > 0 {
			be.IndexCopy(len(src), 1, true, view(out.d.grad, 0), uploadIdx(be, src), nil, view(a.devGrad(), 0))
		}
	}, a)
	return out
}

// ropeDev is RoPE on a device. The rotation's cos and sin tables are
// computed on the host with the CPU's formulas (ropeTables), so device and
// host rotate by the same float32 values.
func (tp *Tape) ropeDev(x *Tensor, rows, h, d int, blocks [][2]int, poss [][]int32, cfg RoPEConfig, scale float32) *Tensor {
	be, spec := onDevice("RoPE", x)
	npos := len(poss[0])
	for _, p := range poss {
		if len(p) != npos {
			npos = rows
		}
	}
	ca, cb, partner := ropeTables(npos, d, blocks, poss, cfg, scale)
	bufs := make([]device.Buffer, 3)
	for i, t := range [][]float32{ca, cb} {
		bufs[i] = be.Alloc(len(t))
		be.Upload(bufs[i], t)
	}
	bufs[2] = uploadIdx(be, partner)
	out := newOnDevice(be, spec, x.Shape)
	n := x.Size()
	if n > 0 {
		be.RoPE(n, h, d, npos, false, x.d.data, bufs[0], bufs[1], bufs[2], out.d.data)
	}
	tp.record("RoPE", out, func() {
		if n > 0 {
			be.RoPE(n, h, d, npos, true, out.d.grad, bufs[0], bufs[1], bufs[2], x.devGrad())
		}
	}, x)
	return out
}

// ropeTables returns A and B [npos, d] and the partner channel of each of
// the d channels such that RoPE is y[c] = A[r,c]·x[c] + B[r,c]·x[partner[c]]
// per head, with the cos and sin of ropeApply / ropeApplyInv.
func ropeTables(npos, d int, blocks [][2]int, poss [][]int32, cfg RoPEConfig, scale float32) (a, b []float32, partner []int32) {
	a, b = make([]float32, npos*d), make([]float32, npos*d)
	partner = make([]int32, d)
	for c := range partner {
		partner[c] = int32(c)
		for r := 0; r < npos; r++ {
			a[r*d+c] = 1 // channels outside the rotated blocks pass through
		}
	}
	for bi, blk := range blocks {
		off, w := blk[0], blk[1]
		half := w / 2
		for c := 0; c < half; c++ {
			partner[off+c], partner[off+c+half] = int32(off+c+half), int32(off+c)
		}
		pos := poss[bi]
		for r := 0; r < npos; r++ {
			for c := 0; c < half; c++ {
				var cs, sn float32
				if cfg.InvFreq != nil {
					p := float32(pos[r%len(pos)])
					ang := float64(p * cfg.InvFreq[c])
					cs, sn = float32(math.Cos(ang))*scale, float32(math.Sin(ang))*scale
				} else {
					ang := float64(pos[r%len(pos)]) * math.Pow(cfg.Theta, -2*float64(c)/float64(w))
					cs, sn = float32(math.Cos(ang)), float32(math.Sin(ang))
				}
				a[r*d+off+c], b[r*d+off+c] = cs, -sn
				a[r*d+off+c+half], b[r*d+off+c+half] = cs, sn
			}
		}
	}
	return a, b, partner
}

// dropoutDev is Dropout on a device: the keep mask is drawn on the host
// from the CPU's stream (dropoutKeep of (seed, element index)) and
// uploaded as a scale per element, so host and device drop the same
// elements.
func (tp *Tape) dropoutDev(x *Tensor, p float32, seed uint64) *Tensor {
	be, spec := onDevice("Dropout", x)
	scale := 1 / (1 - p)
	m := make([]float32, x.Size())
	for i := range m {
		if dropoutKeep(seed, i, p) {
			m[i] = scale
		}
	}
	mask := newOnDevice(be, spec, x.Shape)
	be.Upload(mask.d.data, m)
	return tp.Mul(x, mask)
}

// attentionDev is Attention on a device: per batch element, the backend's
// block primitive over the whole key sequence, with the element's mask
// (maskFor, the CPU's) uploaded as int32 words.
func (tp *Tape) attentionDev(q, k, v *Tensor, opt AttnOptions, nb, sq, sk, h, d int, scale float32) *Tensor {
	be, spec := place("Attention", &q, &k, &v)
	if d > device.MaxHeadDim {
		panic(&DeviceError{Op: "Attention", Msg: fmt.Sprintf("head dimension %d of %v; the device takes at most %d", d, q, device.MaxHeadDim)})
	}
	out := newOnDevice(be, spec, q.Shape)
	lse := be.Alloc(max(nb*sq*h, 1))
	delta := be.Alloc(max(nb*sq*h, 1))
	qn, kn := sq*h*d, sk*h*d
	args := make([]device.AttnArgs, nb)
	for b := 0; b < nb; b++ {
		a := device.AttnArgs{Sq: sq, Sk: sk, H: h, D: d, Scale: scale,
			Q: view(q.d.data, b*qn), K: view(k.d.data, b*kn), V: view(v.d.data, b*kn), O: view(out.d.data, b*qn),
			LSE: view(lse, b*sq*h), Delta: view(delta, b*sq*h), QPos: -1, KPos: -1, QSeg: -1, KSeg: -1}
		if m := opt.maskFor(b, nb, sq, sk); m != nil {
			m.check("Attention", sq, sk)
			setAttnMask(be, m, &a)
		}
		be.Attention(a)
		args[b] = a
	}
	tp.record("Attention", out, func() {
		for b, a := range args {
			a.DO = view(out.d.grad, b*qn)
			if wants(q) {
				a.DQ = view(q.devGrad(), b*qn)
			}
			if wants(k) {
				a.DK = view(k.devGrad(), b*kn)
			}
			if wants(v) {
				a.DV = view(v.devGrad(), b*kn)
			}
			be.AttentionBwd(a)
		}
	}, q, k, v)
	return out
}

// bicubicDev is InterpolateBicubic on a device: the CPU's interpolation
// matrices, uploaded, and the same two GEMMs per channel.
func (tp *Tape) bicubicDev(x *Tensor, n, h, w, ho, wo int, wh, ww []float32, shape []int) *Tensor {
	be, spec := onDevice("InterpolateBicubic", x)
	whb, wwb := be.Alloc(len(wh)), be.Alloc(len(ww))
	be.Upload(whb, wh)
	be.Upload(wwb, ww)
	out := newOnDevice(be, spec, shape)
	tmp := be.Alloc(max(ho*w, 1))
	for c := 0; c < n; c++ {
		devGemm(be, false, false, ho, w, h, 1, view(whb, 0), h, view(x.d.data, c*h*w), w, 0, view(tmp, 0), w)
		devGemm(be, false, true, ho, wo, w, 1, view(tmp, 0), w, view(wwb, 0), w, 0, view(out.d.data, c*ho*wo), wo)
	}
	tp.record("InterpolateBicubic", out, func() {
		dx := x.devGrad()
		tmp := be.Alloc(max(ho*w, 1))
		for c := 0; c < n; c++ {
			devGemm(be, false, false, ho, w, wo, 1, view(out.d.grad, c*ho*wo), wo, view(wwb, 0), w, 0, view(tmp, 0), w)
			devGemm(be, true, false, h, w, ho, 1, view(whb, 0), h, view(tmp, 0), w, 1, view(dx, c*h*w), w)
		}
	}, x)
	return out
}

// anyOnDevice reports whether one of ts lives on a device.
func anyOnDevice(ts []*Tensor) bool {
	for _, t := range ts {
		if t.d != nil {
			return true
		}
	}
	return false
}

// im2colIdx is im2colRun's map: the x index of every cols element, −1 for
// padding.
func im2colIdx(g convGeom) []int32 {
	cw := g.colWidth()
	idx := make([]int32, 0, g.b*g.ho*g.wo*cw)
	for b := 0; b < g.b; b++ {
		for oy := 0; oy < g.ho; oy++ {
			for ox := 0; ox < g.wo; ox++ {
				for c := 0; c < g.c; c++ {
					for ky := 0; ky < g.kh; ky++ {
						iy := oy*g.stride - g.pad + ky
						for kx := 0; kx < g.kw; kx++ {
							ix := ox*g.stride - g.pad + kx
							if iy >= 0 && iy < g.h && ix >= 0 && ix < g.w {
								idx = append(idx, int32(((b*g.c+c)*g.h+iy)*g.w+ix))
							} else {
								idx = append(idx, -1)
							}
						}
					}
				}
			}
		}
	}
	return idx
}

// vqDev is VectorQuantize on a device: the nearest codes are found there
// and their indices downloaded (VQResult.Indices is host data, so this
// waits for the device), then the same ops as the CPU's on the device.
func (tp *Tape) vqDev(z, codebook *Tensor, beta float32, rows, d int) VQResult {
	be, _ := place("VectorQuantize", &z, &codebook)
	ib := be.Alloc(max(rows, 1))
	if rows > 0 {
		be.NearestCode(rows, codebook.Shape[0], d, z.d.data, codebook.d.data, ib)
	}
	words := make([]float32, rows)
	be.Download(words, view(ib, 0))
	idx := make([]int32, rows)
	for i, w := range words {
		idx[i] = int32(math.Float32bits(w))
	}
	e := tp.Reshape(tp.Embedding(codebook, idx), z.Shape...)
	// Straight-through: Out = z + sg(e − z), whose value is exactly e.
	out := tp.Add(z, tp.Sub(Detach(e), Detach(z)))
	be.Copy(view(out.d.data, 0), view(e.d.data, 0), out.Size())
	cb := tp.Mean(tp.Square(tp.Sub(Detach(z), e)))
	cm := tp.Mean(tp.Square(tp.Sub(z, Detach(e))))
	return VQResult{Out: out, Indices: idx, Loss: tp.Add(cb, tp.Scale(cm, beta)), CodebookLoss: cb, Commitment: cm}
}

// setAttnMask uploads the global-terms mask m (non-nil) for a.
func setAttnMask(be device.Backend, m *AttnMask, a *device.AttnArgs) {
	var words []int32
	add := func(s []int32) int {
		if s == nil {
			return -1
		}
		words = append(words, s...)
		return len(words) - len(s)
	}
	a.Causal, a.Prefix = m.Causal, m.Prefix
	a.QPos, a.KPos, a.QSeg, a.KSeg = add(m.QPos), add(m.KPos), add(m.QSeg), add(m.KSeg)
	a.Mask = uploadIdx(be, words)
}
