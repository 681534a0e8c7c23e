package kernels

import "fmt"

// ---------------------------------------------------------------------------
// Movement ops: reshape, permute/transpose, concat, split, slice, gather.
// All outputs are contiguous copies except Reshape, which shares Data.
// ---------------------------------------------------------------------------

// Reshape returns a tensor with the same data and a new shape; one dimension
// may be -1 and is inferred.
func (tp *Tape) Reshape(a *Tensor, shape ...int) *Tensor {
	shape = append([]int{}, shape...)
	infer, known := -1, 1
	for i, d := range shape {
		switch {
		case d == -1 && infer < 0:
			infer = i
		case d < 0:
			panic(shapeErr("Reshape", a.Shape, shape, "bad dimension %d", d))
		default:
			known *= d
		}
	}
	if infer >= 0 {
		if known == 0 || a.Size()%known != 0 {
			panic(shapeErr("Reshape", a.Shape, shape, "cannot infer the -1 dimension"))
		}
		shape[infer] = a.Size() / known
	}
	if checkShape("Reshape", shape) != a.Size() {
		panic(shapeErr("Reshape", a.Shape, shape, "%d elements cannot take %d", a.Size(), numel(shape)))
	}
	if a.d != nil {
		return tp.reshapeDev(a, shape)
	}
	out := &Tensor{Shape: shape, Data: a.Data}
	tp.record("Reshape", out, func() {
		if a.Grad == nil { // first gradient of a: take out's buffer instead of copying it
			a.Grad = out.Grad
			return
		}
		ga := a.Grad
		for i, g := range out.Grad {
			ga[i] += g
		}
	}, a)
	return out
}

// permuteIndex calls f(outIndex, inIndex) for every element of the permuted
// tensor, where out dimension d is input dimension perm[d].
func permuteRun[T float](shape, perm []int, x, y []T, acc bool) {
	nd := len(shape)
	inStride := make([]int, nd)
	s := 1
	for d := nd - 1; d >= 0; d-- {
		inStride[d] = s
		s *= shape[d]
	}
	oshape := make([]int, nd)
	ostr := make([]int, nd) // input stride of each output dim
	for d, p := range perm {
		oshape[d] = shape[p]
		ostr[d] = inStride[p]
	}
	n := numel(shape)
	if n == 0 {
		return
	}
	if nd == 0 {
		if acc {
			x[0] += y[0]
		} else {
			y[0] = x[0]
		}
		return
	}
	idx := make([]int, nd)
	last := oshape[nd-1]
	ls := ostr[nd-1]
	for o := 0; o < n; o += last {
		base := 0
		for d := 0; d < nd-1; d++ {
			base += idx[d] * ostr[d]
		}
		if acc { // x (the input's gradient) += permuted-back y
			for j := 0; j < last; j++ {
				x[base+j*ls] += y[o+j]
			}
		} else {
			for j := 0; j < last; j++ {
				y[o+j] = x[base+j*ls]
			}
		}
		for d := nd - 2; d >= 0; d-- {
			idx[d]++
			if idx[d] < oshape[d] {
				break
			}
			idx[d] = 0
		}
	}
}

// Permute reorders dimensions: output dimension d is input dimension perm[d].
func (tp *Tape) Permute(a *Tensor, perm ...int) *Tensor {
	if len(perm) != len(a.Shape) {
		panic(shapeErr("Permute", a.Shape, perm, "permutation has %d entries for %d dimensions", len(perm), len(a.Shape)))
	}
	seen := make([]bool, len(perm))
	oshape := make([]int, len(perm))
	for d, p := range perm {
		if p < 0 || p >= len(perm) || seen[p] {
			panic(shapeErr("Permute", a.Shape, perm, "not a permutation"))
		}
		seen[p] = true
		oshape[d] = a.Shape[p]
	}
	if a.d != nil {
		return tp.gatherDev("Permute", a, oshape, permuteIdx(a.Shape, perm))
	}
	out := Zeros(oshape...)
	perm = append([]int{}, perm...)
	permuteRun(a.Shape, perm, a.Data, out.Data, false)
	tp.record("Permute", out, func() { permuteRun(a.Shape, perm, a.gradBuf(), out.Grad, true) }, a)
	return out
}

// Transpose swaps dimensions i and j (negative counts from the end).
func (tp *Tape) Transpose(a *Tensor, i, j int) *Tensor {
	nd := len(a.Shape)
	if i < 0 {
		i += nd
	}
	if j < 0 {
		j += nd
	}
	if i < 0 || j < 0 || i >= nd || j >= nd {
		panic(shapeErr("Transpose", a.Shape, []int{i, j}, "no such dimensions"))
	}
	perm := make([]int, nd)
	for d := range perm {
		perm[d] = d
	}
	perm[i], perm[j] = j, i
	return tp.Permute(a, perm...)
}

// Concat joins tensors along axis; all other dimensions must agree.
func (tp *Tape) Concat(axis int, ts ...*Tensor) *Tensor {
	if len(ts) == 0 {
		panic(shapeErr("Concat", nil, nil, "no tensors"))
	}
	first := ts[0]
	outer, _, inner, ax := splitAxis("Concat", first.Shape, axis)
	total := 0
	for _, t := range ts {
		if len(t.Shape) != len(first.Shape) {
			panic(shapeErr("Concat", first.Shape, t.Shape, "ranks differ"))
		}
		for d := range t.Shape {
			if d != ax && t.Shape[d] != first.Shape[d] {
				panic(shapeErr("Concat", first.Shape, t.Shape, "dimension %d differs (concat axis %d)", d, ax))
			}
		}
		total += t.Shape[ax]
	}
	shape := append([]int{}, first.Shape...)
	shape[ax] = total
	if first.d != nil || anyOnDevice(ts) {
		return tp.concatDev(ts, shape, outer, inner, ax)
	}
	out := Zeros(shape...)
	off := 0
	for _, t := range ts {
		n := t.Shape[ax] * inner
		for o := 0; o < outer; o++ {
			copy(out.Data[o*total*inner+off:][:n], t.Data[o*n:][:n])
		}
		off += n
	}
	tp.record("Concat", out, func() {
		off := 0
		for _, t := range ts {
			n := t.Shape[ax] * inner
			if wants(t) {
				g := t.gradBuf()
				for o := 0; o < outer; o++ {
					src := out.Grad[o*total*inner+off:][:n]
					dst := g[o*n:][:n]
					for i, v := range src {
						dst[i] += v
					}
				}
			}
			off += n
		}
	}, ts...)
	return out
}

// Slice returns the elements [start, end) along axis.
func (tp *Tape) Slice(a *Tensor, axis, start, end int) *Tensor {
	outer, n, inner, ax := splitAxis("Slice", a.Shape, axis)
	if start < 0 || end < start || end > n {
		panic(shapeErr("Slice", a.Shape, []int{start, end}, "range [%d, %d) outside axis %d of size %d", start, end, ax, n))
	}
	shape := append([]int{}, a.Shape...)
	shape[ax] = end - start
	if a.d != nil {
		return tp.gatherDev("Slice", a, shape, axisIdx(outer, n, inner, end-start, func(_, i, _ int) int { return start + i }))
	}
	out := Zeros(shape...)
	w := (end - start) * inner
	for o := 0; o < outer; o++ {
		copy(out.Data[o*w:][:w], a.Data[(o*n+start)*inner:][:w])
	}
	tp.record("Slice", out, func() {
		// The first of Split's pieces to run backward finds a fresh
		// (uncleared) buffer: it copies its part and zeroes the rest, row
		// by row, instead of clearing everything and adding.
		g, fresh := a.gradDst()
		for o := 0; o < outer; o++ {
			row, src := g[o*n*inner:][:n*inner], out.Grad[o*w:][:w]
			if fresh {
				clear(row[:start*inner])
				copy(row[start*inner:], src)
				clear(row[end*inner:])
			} else {
				addTo(row[start*inner:end*inner], src)
			}
		}
	}, a)
	return out
}

// Split cuts a along axis into pieces of the given sizes (which must sum to
// the axis length).
func (tp *Tape) Split(a *Tensor, axis int, sizes ...int) []*Tensor {
	_, n, _, _ := splitAxis("Split", a.Shape, axis)
	sum := 0
	for _, s := range sizes {
		if s < 0 {
			panic(shapeErr("Split", a.Shape, sizes, "negative size"))
		}
		sum += s
	}
	if sum != n {
		panic(shapeErr("Split", a.Shape, sizes, "sizes sum to %d, axis has %d", sum, n))
	}
	out := make([]*Tensor, len(sizes))
	off := 0
	for i, s := range sizes {
		out[i] = tp.Slice(a, axis, off, off+s)
		off += s
	}
	return out
}

// IndexSelect gathers entries of a along axis: out has a's shape with
// dimension axis replaced by len(idx), out[..., i, ...] = a[..., idx[i], ...].
// Backward scatters (adds) into the selected entries; repeated indices add.
func (tp *Tape) IndexSelect(a *Tensor, axis int, idx []int32) *Tensor {
	outer, n, inner, ax := splitAxis("IndexSelect", a.Shape, axis)
	for i, v := range idx {
		if v < 0 || int(v) >= n {
			panic(fmt.Errorf("kernels: IndexSelect: shape %v axis %d: index %d at position %d outside [0, %d)", a.Shape, ax, v, i, n))
		}
	}
	idx = append([]int32{}, idx...)
	shape := append([]int{}, a.Shape...)
	shape[ax] = len(idx)
	k := len(idx)
	if a.d != nil {
		return tp.gatherDev("IndexSelect", a, shape, axisIdx(outer, n, inner, k, func(_, i, _ int) int { return int(idx[i]) }))
	}
	out := Zeros(shape...)
	for o := 0; o < outer; o++ {
		for i, v := range idx {
			copy(out.Data[(o*k+i)*inner:][:inner], a.Data[(o*n+int(v))*inner:][:inner])
		}
	}
	tp.record("IndexSelect", out, func() {
		g := a.gradBuf()
		for o := 0; o < outer; o++ {
			for i, v := range idx {
				dst := g[(o*n+int(v))*inner:][:inner]
				for j, x := range out.Grad[(o*k+i)*inner:][:inner] {
					dst[j] += x
				}
			}
		}
	}, a)
	return out
}

// Embedding looks up rows of table [V, D]: the result is [len(ids), D].
// Reshape it to [B, T, D] as needed.
func (tp *Tape) Embedding(table *Tensor, ids []int32) *Tensor {
	if len(table.Shape) != 2 {
		panic(shapeErr("Embedding", table.Shape, nil, "table must be [vocab, dim]"))
	}
	return tp.IndexSelect(table, 0, ids)
}

// Gather picks, along axis, one entry per output element, as torch.gather:
// out has a's shape with dimension axis replaced by k = len(idx)/(the other
// dimensions), and out[o, j, i] = a[o, idx[o, j, i], i] where o runs over the
// dimensions before axis and i over those after (idx is laid out like out).
// Backward scatters (adds) into the picked entries.
func (tp *Tape) Gather(a *Tensor, axis int, idx []int32) *Tensor {
	outer, n, inner, ax := splitAxis("Gather", a.Shape, axis)
	if outer*inner == 0 || len(idx)%(outer*inner) != 0 {
		panic(shapeErr("Gather", a.Shape, []int{len(idx)}, "%d indices do not tile the %d positions around axis %d", len(idx), outer*inner, ax))
	}
	k := len(idx) / (outer * inner)
	for i, v := range idx {
		if v < 0 || int(v) >= n {
			panic(fmt.Errorf("kernels: Gather: shape %v axis %d: index %d at position %d outside [0, %d)", a.Shape, ax, v, i, n))
		}
	}
	idx = append([]int32{}, idx...)
	shape := append([]int{}, a.Shape...)
	shape[ax] = k
	if a.d != nil {
		return tp.gatherDev("Gather", a, shape, axisIdx(outer, n, inner, k, func(o, j, i int) int { return int(idx[(o*k+j)*inner+i]) }))
	}
	out := Zeros(shape...)
	for o := 0; o < outer; o++ {
		for j := 0; j < k; j++ {
			for i := 0; i < inner; i++ {
				p := (o*k+j)*inner + i
				out.Data[p] = a.Data[(o*n+int(idx[p]))*inner+i]
			}
		}
	}
	tp.record("Gather", out, func() {
		g := a.gradBuf()
		for o := 0; o < outer; o++ {
			for j := 0; j < k; j++ {
				for i := 0; i < inner; i++ {
					p := (o*k+j)*inner + i
					g[(o*n+int(idx[p]))*inner+i] += out.Grad[p]
				}
			}
		}
	}, a)
	return out
}
