package kernels

// ---------------------------------------------------------------------------
// Reductions. Sums accumulate in float64 so that long rows lose no precision.
// ---------------------------------------------------------------------------

// Sum returns the sum of all elements, shape [1].
func (tp *Tape) Sum(a *Tensor) *Tensor {
	if a.d != nil {
		return tp.sumDev(a)
	}
	var s float64
	for _, v := range a.Data {
		s += float64(v)
	}
	out := Scalar(float32(s))
	tp.record("Sum", out, func() {
		g, ga := out.Grad[0], a.gradBuf()
		for i := range ga {
			ga[i] += g
		}
	}, a)
	return out
}

// Mean returns the mean of all elements, shape [1].
func (tp *Tape) Mean(a *Tensor) *Tensor {
	if a.Size() == 0 {
		panic(shapeErr("Mean", a.Shape, nil, "mean of an empty tensor"))
	}
	return tp.Scale(tp.Sum(a), 1/float32(a.Size()))
}

// splitAxis returns (outer, n, inner) for a reduction or slicing along axis.
func splitAxis(op string, shape []int, axis int) (outer, n, inner, ax int) {
	if axis < 0 {
		axis += len(shape)
	}
	if axis < 0 || axis >= len(shape) {
		panic(shapeErr(op, shape, nil, "no axis %d", axis))
	}
	return numel(shape[:axis]), shape[axis], numel(shape[axis+1:]), axis
}

func sumAxisFwd[T float](outer, n, inner int, x, y []T) {
	for o := 0; o < outer; o++ {
		yo := y[o*inner : (o+1)*inner]
		for j := range yo {
			yo[j] = 0
		}
		for i := 0; i < n; i++ {
			xr := x[(o*n+i)*inner:][:inner]
			for j, v := range xr {
				yo[j] += v
			}
		}
	}
}

func sumAxisBwd[T float](outer, n, inner int, dy, dx []T) {
	for o := 0; o < outer; o++ {
		g := dy[o*inner : (o+1)*inner]
		for i := 0; i < n; i++ {
			d := dx[(o*n+i)*inner:][:inner]
			for j, v := range g {
				d[j] += v
			}
		}
	}
}

// SumAxis sums over one axis (negative counts from the end) and removes it.
func (tp *Tape) SumAxis(a *Tensor, axis int) *Tensor {
	outer, n, inner, ax := splitAxis("SumAxis", a.Shape, axis)
	shape := append(append([]int{}, a.Shape[:ax]...), a.Shape[ax+1:]...)
	if a.d != nil {
		return tp.sumAxisDev(a, shape, outer, n, inner)
	}
	out := Zeros(shape...)
	sumAxisFwd(outer, n, inner, a.Data, out.Data)
	tp.record("SumAxis", out, func() { sumAxisBwd(outer, n, inner, out.Grad, a.gradBuf()) }, a)
	return out
}

// MeanAxis averages over one axis and removes it.
func (tp *Tape) MeanAxis(a *Tensor, axis int) *Tensor {
	_, n, _, _ := splitAxis("MeanAxis", a.Shape, axis)
	if n == 0 {
		panic(shapeErr("MeanAxis", a.Shape, nil, "mean over an empty axis %d", axis))
	}
	return tp.Scale(tp.SumAxis(a, axis), 1/float32(n))
}
