package kernels

import (
	"math/rand/v2"
	"testing"
)

func matmulCase(as, bs []int, ta, tb bool) opCase {
	return opCase{
		name:   "Matmul",
		shapes: [][]int{as, bs},
		tape:   func(tp *Tape, in []*Tensor) *Tensor { return tp.MatmulT(in[0], in[1], ta, tb) },
		ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
			p := planMatmul("Matmul", as, bs, ta, tb)
			out := make([]float64, numel(p.out))
			matmulFwd(gemmNaive[float64], p, ta, tb, in[0], in[1], out)
			return out, func(d []float64) [][]float64 {
				g := zerosLike(in)
				matmulBwd(gemmNaive[float64], p, ta, tb, in[0], in[1], d, g[0], g[1])
				return g
			}
		},
	}
}

func TestMatmulGrad(t *testing.T) {
	var cases []opCase
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			a, b := []int{3, 4}, []int{4, 5}
			if ta {
				a = []int{4, 3}
			}
			if tb {
				b = []int{5, 4}
			}
			cases = append(cases, matmulCase(a, b, ta, tb))
			cases = append(cases, matmulCase(append([]int{2}, a...), append([]int{2}, b...), ta, tb))
			cases = append(cases, matmulCase(append([]int{2, 1}, a...), b, ta, tb))
			cases = append(cases, matmulCase(a, append([]int{3}, b...), ta, tb))
		}
	}
	runCases(t, cases)
}

func TestLinearGrad(t *testing.T) {
	for _, withBias := range []bool{true, false} {
		shapes := [][]int{{2, 3, 4}, {5, 4}}
		if withBias {
			shapes = append(shapes, []int{5})
		}
		wb := withBias
		runCases(t, []opCase{{
			name:   "Linear",
			shapes: shapes,
			tape: func(tp *Tape, in []*Tensor) *Tensor {
				if wb {
					return tp.Linear(in[0], in[1], in[2])
				}
				return tp.Linear(in[0], in[1], nil)
			},
			ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
				var b []float64
				if wb {
					b = in[2]
				}
				out := make([]float64, 6*5)
				linearFwd(gemmNaive[float64], 6, 4, 5, in[0], in[1], b, out)
				return out, func(d []float64) [][]float64 {
					g := zerosLike(in)
					var db []float64
					if wb {
						db = g[2]
					}
					linearBwd(gemmNaive[float64], 6, 4, 5, in[0], in[1], d, g[0], g[1], db, false)
					return g
				}
			},
		}})
	}
}

func binCase(k binKind, as, bs []int) opCase {
	c := opCase{
		name:   binNames[k],
		shapes: [][]int{as, bs},
		tape:   func(tp *Tape, in []*Tensor) *Tensor { return tp.binary(k, in[0], in[1]) },
		ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
			p := planBcast("", as, bs)
			out := make([]float64, p.n)
			binFwd(k, &p, in[0], in[1], out)
			return out, func(d []float64) [][]float64 {
				g := zerosLike(in)
				binBwd(k, &p, in[0], in[1], d, g[0], g[1])
				return g
			}
		},
	}
	if k == binDiv {
		c.gen = func(rng *rand.Rand, i, j int) float64 {
			if i == 1 {
				return 1 + rng.Float64() // keep denominators away from 0
			}
			return rng.NormFloat64()
		}
	}
	return c
}

func TestBinaryGrad(t *testing.T) {
	pairs := [][2][]int{
		{{2, 3}, {2, 3}},
		{{2, 3, 4}, {4}},
		{{4}, {2, 3, 4}},
		{{2, 1, 4}, {3, 1}},
		{{2, 3, 4}, {2, 1, 4}},
		{{1}, {3, 2}},
	}
	var cases []opCase
	for k := binAdd; k <= binDiv; k++ {
		for _, p := range pairs {
			cases = append(cases, binCase(k, p[0], p[1]))
		}
	}
	runCases(t, cases)
}

// naive broadcast reference, independent of planBcast's index arithmetic.
func TestBroadcastShapes(t *testing.T) {
	for _, tc := range []struct {
		a, b, want []int
	}{
		{[]int{2, 3}, []int{3}, []int{2, 3}},
		{[]int{2, 1, 4}, []int{3, 1}, []int{2, 3, 4}},
		{[]int{1}, []int{5, 2}, []int{5, 2}},
		{[]int{}, []int{2}, []int{2}},
	} {
		p := planBcast("Add", tc.a, tc.b)
		if !sameShape(p.out, tc.want) {
			t.Errorf("planBcast(%v, %v) = %v, want %v", tc.a, tc.b, p.out, tc.want)
		}
	}
	err := Catch(func() { NewTape().Add(Zeros(2, 3), Zeros(4)) })
	if err == nil || err.Error() != "kernels: Add: shapes [2 3] and [4]: cannot broadcast: dimension 1 is 3 and 4" {
		t.Errorf("Add([2 3], [4]) error = %v", err)
	}
}

func scaleCase() opCase {
	return opCase{
		name: "Scale", shapes: [][]int{{3, 2}},
		tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.Scale(in[0], 2.5) },
		ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
			out := make([]float64, len(in[0]))
			for i, v := range in[0] {
				out[i] = 2.5 * v
			}
			return out, func(d []float64) [][]float64 {
				g := zerosLike(in)
				for i, v := range d {
					g[0][i] = 2.5 * v
				}
				return g
			}
		},
	}
}

func TestUnaryGrad(t *testing.T) {
	cases := []opCase{scaleCase()}
	for k := unGELU; k <= unSquare; k++ {
		cases = append(cases, opCase{
			name: unaryNames[k], shapes: [][]int{{4, 5}},
			tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.unary(k, in[0]) },
			ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
				out := make([]float64, len(in[0]))
				unaryFwd(k, in[0], out)
				return out, func(d []float64) [][]float64 {
					g := zerosLike(in)
					unaryBwd(k, in[0], d, g[0])
					return g
				}
			},
			gen: func(rng *rand.Rand, i, j int) float64 {
				v := 3 * rng.NormFloat64()
				if k == unReLU && v > -0.01 && v < 0.01 {
					v = 0.5 // keep away from the kink
				}
				return v
			},
		})
	}
	cases = append(cases, opCase{
		name: "SwiGLU", shapes: [][]int{{3, 4}, {3, 4}},
		tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.SwiGLU(in[0], in[1]) },
		ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
			out := make([]float64, len(in[0]))
			swigluFwd(in[0], in[1], out)
			return out, func(d []float64) [][]float64 {
				g := zerosLike(in)
				swigluBwd(in[0], in[1], d, g[0], g[1])
				return g
			}
		},
	})
	runCases(t, cases)
}

func TestReduceGrad(t *testing.T) {
	sumAll := opCase{
		name: "Sum", shapes: [][]int{{3, 4}},
		tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.Sum(in[0]) },
		ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
			var s float64
			for _, v := range in[0] {
				s += v
			}
			return []float64{s}, func(d []float64) [][]float64 {
				g := zerosLike(in)
				for i := range g[0] {
					g[0][i] = d[0]
				}
				return g
			}
		},
	}
	mean := opCase{
		name: "Mean", shapes: [][]int{{3, 4}},
		tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.Mean(in[0]) },
		ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
			var s float64
			for _, v := range in[0] {
				s += v
			}
			n := float64(len(in[0]))
			return []float64{s / n}, func(d []float64) [][]float64 {
				g := zerosLike(in)
				for i := range g[0] {
					g[0][i] = d[0] / n
				}
				return g
			}
		},
	}
	cases := []opCase{sumAll, mean}
	for _, axis := range []int{0, 1, 2, -1} {
		shape := []int{2, 3, 4}
		cases = append(cases, opCase{
			name: "SumAxis", shapes: [][]int{shape},
			tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.SumAxis(in[0], axis) },
			ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
				o, n, inner, _ := splitAxis("", shape, axis)
				out := make([]float64, o*inner)
				sumAxisFwd(o, n, inner, in[0], out)
				return out, func(d []float64) [][]float64 {
					g := zerosLike(in)
					sumAxisBwd(o, n, inner, d, g[0])
					return g
				}
			},
		})
	}
	runCases(t, cases)
}

func TestSoftmaxGrad(t *testing.T) {
	runCases(t, []opCase{
		{
			name: "Softmax", shapes: [][]int{{3, 5}},
			tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.Softmax(in[0]) },
			ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
				out := make([]float64, len(in[0]))
				softmaxFwd(3, 5, in[0], out)
				return out, func(d []float64) [][]float64 {
					g := zerosLike(in)
					softmaxBwd(3, 5, out, d, g[0])
					return g
				}
			},
		},
		{
			name: "LogSoftmax", shapes: [][]int{{2, 2, 6}},
			tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.LogSoftmax(in[0]) },
			ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
				out := make([]float64, len(in[0]))
				logSoftmaxFwd(4, 6, in[0], out)
				return out, func(d []float64) [][]float64 {
					g := zerosLike(in)
					logSoftmaxBwd(4, 6, out, d, g[0])
					return g
				}
			},
		},
	})
}

func TestCrossEntropyGrad(t *testing.T) {
	tgt := []int32{1, 0, 4, -100, 2, 3}
	w := []float32{1, 0.5, 2, 1, 0, 1.5}
	for _, o := range []CEOptions{
		{},
		{HasIgnore: true, IgnoreIndex: -100},
		{HasIgnore: true, IgnoreIndex: -100, Weights: w},
		{HasIgnore: true, IgnoreIndex: -100, LabelSmoothing: 0.1},
		{HasIgnore: true, IgnoreIndex: -100, Weights: w, LabelSmoothing: 0.2, Sum: true},
	} {
		targets := tgt
		if !o.HasIgnore {
			targets = []int32{1, 0, 4, 3, 2, 3}
		}
		runCases(t, []opCase{{
			name: "CrossEntropy", shapes: [][]int{{2, 3, 5}},
			tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.CrossEntropy(in[0], targets, o) },
			ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
				logp, loss := make([]float64, 30), make([]float64, 6)
				num, den := ceFwd(6, 5, in[0], targets, &o, logp, loss)
				norm := den
				if o.Sum {
					norm = 1
				}
				return []float64{num / norm}, func(d []float64) [][]float64 {
					g := zerosLike(in)
					ceBwd(6, 5, targets, &o, logp, d[0]/norm, g[0])
					return g
				}
			},
		}})
	}
}

func TestNormGrad(t *testing.T) {
	const eps = 1e-5
	runCases(t, []opCase{
		{
			name: "LayerNorm", shapes: [][]int{{2, 3, 6}, {6}, {6}},
			tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.LayerNorm(in[0], in[1], in[2], eps) },
			ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
				out, mean, rstd := make([]float64, 36), make([]float64, 6), make([]float64, 6)
				layerNormFwd(6, 6, in[0], in[1], in[2], out, mean, rstd, eps)
				return out, func(d []float64) [][]float64 {
					g := zerosLike(in)
					layerNormBwd(6, 6, in[0], in[1], mean, rstd, d, g[0], g[1], g[2])
					return g
				}
			},
		},
		{
			name: "LayerNormNoAffine", shapes: [][]int{{4, 5}},
			tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.LayerNorm(in[0], nil, nil, eps) },
			ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
				out, mean, rstd := make([]float64, 20), make([]float64, 4), make([]float64, 4)
				layerNormFwd(4, 5, in[0], nil, nil, out, mean, rstd, eps)
				return out, func(d []float64) [][]float64 {
					g := zerosLike(in)
					layerNormBwd(4, 5, in[0], nil, mean, rstd, d, g[0], nil, nil)
					return g
				}
			},
		},
		{
			name: "RMSNormNoWeight", shapes: [][]int{{3, 9}},
			tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.RMSNorm(in[0], nil, eps) },
			ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
				out, rstd := make([]float64, 27), make([]float64, 3)
				rmsNormFwd(3, 9, in[0], nil, out, rstd, eps)
				return out, func(d []float64) [][]float64 {
					g := zerosLike(in)
					rmsNormBwd(3, 9, in[0], nil, rstd, d, g[0], nil)
					return g
				}
			},
		},
		{
			name: "RMSNorm", shapes: [][]int{{3, 7}, {7}},
			tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.RMSNorm(in[0], in[1], eps) },
			ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
				out, rstd := make([]float64, 21), make([]float64, 3)
				rmsNormFwd(3, 7, in[0], in[1], out, rstd, eps)
				return out, func(d []float64) [][]float64 {
					g := zerosLike(in)
					rmsNormBwd(3, 7, in[0], in[1], rstd, d, g[0], g[1])
					return g
				}
			},
		},
	})
}
