package kernels

// splitmix64 is a counter-based hash: the keep/drop decision of element i
// depends only on (seed, i), so dropout is reproducible, needs no RNG state
// and gives the same mask however the work is split.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// dropoutKeep reports whether element i survives dropout with probability p.
func dropoutKeep(seed uint64, i int, p float32) bool {
	u := float32(splitmix64(seed^splitmix64(uint64(i)))>>40) / (1 << 24) // uniform in [0, 1)
	return u >= p
}

// Dropout zeroes each element with probability p and scales the rest by
// 1/(1−p). The mask is a pure function of (seed, element index): derive the
// seed from (run seed, step, layer) to make training reproducible. p = 0
// returns x itself.
func (tp *Tape) Dropout(x *Tensor, p float32, seed uint64) *Tensor {
	if p == 0 {
		return x
	}
	if p < 0 || p >= 1 {
		panic(shapeErr("Dropout", x.Shape, nil, "probability %g outside [0, 1)", p))
	}
	if x.d != nil {
		return tp.dropoutDev(x, p, seed)
	}
	scale := 1 / (1 - p)
	out := Zeros(x.Shape...)
	for i, v := range x.Data {
		if dropoutKeep(seed, i, p) {
			out.Data[i] = v * scale
		}
	}
	tp.record("Dropout", out, func() {
		g := x.gradBuf()
		for i, d := range out.Grad {
			if dropoutKeep(seed, i, p) {
				g[i] += d * scale
			}
		}
	}, x)
	return out
}
