package kernels

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// unravel/ravel: naive multi-index arithmetic for the movement-op oracles.
func unravel(i int, shape []int) []int {
	idx := make([]int, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		idx[d] = i % shape[d]
		i /= shape[d]
	}
	return idx
}

func ravel(idx, shape []int) int {
	i := 0
	for d := range shape {
		i = i*shape[d] + idx[d]
	}
	return i
}

// gatherRef builds a reference for a movement op from the source index of
// each output element (-1 = from the second input, not used here).
func gatherRef(src func(out int) (input, index int), nOut int) refFn {
	return func(in [][]float64) ([]float64, func([]float64) [][]float64) {
		out := make([]float64, nOut)
		for i := range out {
			k, j := src(i)
			out[i] = in[k][j]
		}
		return out, func(d []float64) [][]float64 {
			g := zerosLike(in)
			for i, v := range d {
				k, j := src(i)
				g[k][j] += v
			}
			return g
		}
	}
}

func TestMovementGrad(t *testing.T) {
	shape := []int{2, 3, 4}
	perm := []int{2, 0, 1}
	pshape := []int{4, 2, 3}
	cat0 := []int{2, 2, 4}
	cases := []opCase{
		{
			name: "Reshape", shapes: [][]int{shape},
			tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.Reshape(in[0], 6, -1) },
			ref:  gatherRef(func(o int) (int, int) { return 0, o }, 24),
		},
		{
			name: "Permute", shapes: [][]int{shape},
			tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.Permute(in[0], perm...) },
			ref: gatherRef(func(o int) (int, int) {
				oi := unravel(o, pshape)
				ii := make([]int, 3)
				for d, p := range perm {
					ii[p] = oi[d]
				}
				return 0, ravel(ii, shape)
			}, 24),
		},
		{
			name: "Transpose", shapes: [][]int{shape},
			tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.Transpose(in[0], -1, -2) },
			ref: gatherRef(func(o int) (int, int) {
				oi := unravel(o, []int{2, 4, 3})
				return 0, ravel([]int{oi[0], oi[2], oi[1]}, shape)
			}, 24),
		},
		{
			name: "Concat", shapes: [][]int{shape, cat0},
			tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.Concat(1, in[0], in[1]) },
			ref: gatherRef(func(o int) (int, int) {
				oi := unravel(o, []int{2, 5, 4})
				if oi[1] < 3 {
					return 0, ravel(oi, shape)
				}
				return 1, ravel([]int{oi[0], oi[1] - 3, oi[2]}, cat0)
			}, 40),
		},
		{
			name: "Slice", shapes: [][]int{shape},
			tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.Slice(in[0], 2, 1, 3) },
			ref: gatherRef(func(o int) (int, int) {
				oi := unravel(o, []int{2, 3, 2})
				return 0, ravel([]int{oi[0], oi[1], oi[2] + 1}, shape)
			}, 12),
		},
		{
			name: "Split", shapes: [][]int{shape},
			tape: func(tp *Tape, in []*Tensor) *Tensor {
				parts := tp.Split(in[0], 1, 1, 2)
				return tp.Concat(1, parts[1], parts[0]) // swap the two pieces
			},
			ref: gatherRef(func(o int) (int, int) {
				oi := unravel(o, shape)
				src := (oi[1] + 1) % 3
				return 0, ravel([]int{oi[0], src, oi[2]}, shape)
			}, 24),
		},
		{
			name: "IndexSelect", shapes: [][]int{shape},
			tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.IndexSelect(in[0], 1, []int32{2, 0, 2, 1}) },
			ref: gatherRef(func(o int) (int, int) {
				oi := unravel(o, []int{2, 4, 4})
				return 0, ravel([]int{oi[0], []int{2, 0, 2, 1}[oi[1]], oi[2]}, shape)
			}, 32),
		},
		{
			name: "Gather", shapes: [][]int{shape},
			tape: func(tp *Tape, in []*Tensor) *Tensor {
				return tp.Gather(in[0], 1, []int32{2, 0, 1, 1, 0, 0, 2, 2, 1, 2, 0, 1, 0, 0, 0, 2})
			},
			ref: gatherRef(func(o int) (int, int) {
				idx := []int32{2, 0, 1, 1, 0, 0, 2, 2, 1, 2, 0, 1, 0, 0, 0, 2}
				oi := unravel(o, []int{2, 2, 4})
				return 0, ravel([]int{oi[0], int(idx[o]), oi[2]}, shape)
			}, 16),
		},
		{
			name: "Embedding", shapes: [][]int{{5, 3}},
			tape: func(tp *Tape, in []*Tensor) *Tensor { return tp.Embedding(in[0], []int32{4, 4, 0, 2}) },
			ref: gatherRef(func(o int) (int, int) {
				return 0, int([]int32{4, 4, 0, 2}[o/3])*3 + o%3
			}, 12),
		},
	}
	runCases(t, cases)
}

func TestShapeErrors(t *testing.T) {
	tp := NewTape()
	for _, tc := range []struct {
		name string
		f    func()
		want string
	}{
		{"Matmul", func() { tp.Matmul(Zeros(2, 3), Zeros(4, 5)) }, "kernels: Matmul: shapes [2 3] and [4 5]: inner dimensions 3 and 4 differ (transA=false transB=false)"},
		{"MatmulBatch", func() { tp.Matmul(Zeros(2, 2, 3), Zeros(3, 3, 5)) }, "kernels: Matmul: shapes [2 2 3] and [3 3 5]: batch dimensions [2] and [3] differ"},
		{"Linear", func() { tp.Linear(Zeros(2, 3), Zeros(4, 5), nil) }, "kernels: Linear: shapes [2 3] and [4 5]: want x [..., in] and w [out, in]"},
		{"Reshape", func() { tp.Reshape(Zeros(2, 3), 4, 2) }, "kernels: Reshape: shapes [2 3] and [4 2]: 6 elements cannot take 8"},
		{"Concat", func() { tp.Concat(0, Zeros(2, 3), Zeros(2, 4)) }, "kernels: Concat: shapes [2 3] and [2 4]: dimension 1 differs (concat axis 0)"},
		{"LayerNorm", func() { tp.LayerNorm(Zeros(2, 3), Zeros(4), nil, 1e-5) }, "kernels: LayerNorm: shapes [2 3] and [4]: affine parameter must have 3 values (the last dimension)"},
		{"New", func() { New(make([]float32, 5), 2, 3) }, "kernels: New: shape [2 3]: data has 5 values, shape needs 6"},
	} {
		err := Catch(tc.f)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: got error %v, want %q", tc.name, err, tc.want)
		}
	}
}

// FuzzShapes feeds random shapes to the shape-checking ops: each call must
// either succeed with the shape the op promises or panic with a
// *ShapeError, never with an index error or a wrong-sized result.
func FuzzShapes(f *testing.F) {
	f.Add(uint8(2), uint8(3), uint8(3), uint8(4), uint8(1), uint8(0))
	f.Add(uint8(1), uint8(0), uint8(2), uint8(2), uint8(3), uint8(1))
	f.Add(uint8(4), uint8(1), uint8(1), uint8(4), uint8(2), uint8(2))
	f.Fuzz(func(t *testing.T, a0, a1, b0, b1, extra, sel uint8) {
		as := []int{int(a0 % 5), int(a1 % 5)}
		bs := []int{int(b0 % 5), int(b1 % 5)}
		if extra%3 == 1 {
			as = append([]int{int(extra%4) + 1}, as...)
		}
		if extra%3 == 2 {
			bs = append([]int{int(extra % 2)}, bs...)
		}
		rng := rand.New(rand.NewPCG(uint64(a0), uint64(b1)))
		a := Zeros(as...).InitNormal(rng, 1).SetRequiresGrad(true)
		b := Zeros(bs...).InitNormal(rng, 1).SetRequiresGrad(extra&32 != 0)
		tp := NewTape()
		var out *Tensor
		err := Catch(func() {
			switch sel % 8 {
			case 0:
				out = tp.MatmulT(a, b, extra&8 != 0, extra&16 != 0)
			case 1:
				out = tp.Add(a, b)
			case 2:
				out = tp.Concat(int(extra%2), a, b)
			case 3:
				out = tp.Reshape(a, bs...)
			case 4:
				out = tp.Slice(a, 0, int(b0%4), int(b0%4)+int(b1%3))
			case 5:
				out = tp.Linear(a, b, nil)
			case 6:
				out = tp.Mul(b, a)
			case 7:
				out = tp.Transpose(a, int(b0%3)-1, int(b1%3)-1)
			}
		})
		if err != nil {
			return
		}
		if out.Size() != numel(out.Shape) || len(out.Data) != numel(out.Shape) {
			t.Fatalf("op %d on %v, %v: result shape %v holds %d values", sel%8, as, bs, out.Shape, len(out.Data))
		}
		// Backward through the result must not panic either.
		if out.Size() > 0 && out.RequiresGrad() {
			tp.BackwardFrom(out, make([]float32, out.Size()))
		}
	})
}

// FuzzShapes2 covers the ops with structured shapes (attention, RoPE,
// convolution, patch embedding, bicubic resizing, cross-entropy, norms):
// any shape either works, with the promised output size, or panics with a
// *ShapeError or an error naming the bad argument, never with an index error.
func FuzzShapes2(f *testing.F) {
	f.Add(uint8(1), uint8(4), uint8(2), uint8(8), uint8(3), uint8(0))
	f.Add(uint8(2), uint8(5), uint8(1), uint8(4), uint8(7), uint8(1))
	f.Add(uint8(1), uint8(8), uint8(3), uint8(6), uint8(2), uint8(4))
	f.Fuzz(func(t *testing.T, b, s, h, d, e, sel uint8) {
		B, S, H, D, E := int(b%3), int(s%9), int(h%4), int(d%9), int(e%7)
		rng := rand.New(rand.NewPCG(uint64(b), uint64(s)))
		mk := func(shape ...int) *Tensor { return Zeros(shape...).InitNormal(rng, 1).SetRequiresGrad(true) }
		tp := NewTape()
		var out *Tensor
		err := Catch(func() {
			defer func() {
				// Argument errors that are not shape errors (bad ids,
				// masks) must be plain errors naming the argument.
				if r := recover(); r != nil {
					if _, ok := r.(*ShapeError); ok {
						panic(r)
					}
					if e, ok := r.(error); ok && strings.HasPrefix(e.Error(), "kernels: ") {
						out = nil
						return
					}
					panic(r)
				}
			}()
			switch sel % 8 {
			case 0:
				out = tp.Attention(mk(B, S, H, D), mk(B, S+E%2, H, D), mk(B, S+E%2, H, D), AttnOptions{Causal: e&1 == 0, Prefix: E})
			case 1:
				pos := make([]int32, S)
				out = tp.RoPE(mk(B, S, H, D), RoPEConfig{Theta: 10000, Pos: pos, Dims: E})
			case 2:
				out = tp.Conv2D(mk(B, H, S, D), mk(E, H, 3, 2), mk(E), 1+E%2, E%2)
			case 3:
				out = tp.PatchEmbed(mk(B, H, S, D), mk(E, H, 2, 2), nil)
			case 4:
				out = tp.InterpolateBicubic(mk(B, H, S, D), E, S)
			case 5:
				tgt := make([]int32, B*S)
				for i := range tgt {
					tgt[i] = int32(i % max(1, D+E-3))
				}
				out = tp.CrossEntropy(mk(B, S, D), tgt, CEOptions{})
			case 6:
				out = tp.LayerNorm(mk(B, S, D), mk(E), nil, 1e-5)
			case 7:
				out = tp.Split(mk(B, S, D), 1, E, S-E)[1]
			}
		})
		if err != nil || out == nil {
			return
		}
		if len(out.Data) != numel(out.Shape) {
			t.Fatalf("op %d: result shape %v holds %d values", sel%8, out.Shape, len(out.Data))
		}
		if out.RequiresGrad() && out.Size() > 0 {
			tp.BackwardFrom(out, make([]float32, out.Size()))
		}
	})
}
