package kernels

import (
	"math"
	"math/cmplx"
	"testing"
)

// ropeNaiveInv rotates with complex numbers by pos·inv[c] and scales by a:
// (x_c + i·x_{c+w/2})·a·e^{i·p·inv_c}. sign −1 gives the transpose (the
// backward rule).
func ropeNaiveInv(rows, h, d int, x []float64, pos []int32, inv []float32, a float64, off, w int, sign float64) []float64 {
	y := append([]float64{}, x...)
	half := w / 2
	for r := 0; r < rows; r++ {
		for hh := 0; hh < h; hh++ {
			base := r*h*d + hh*d + off
			for c := 0; c < half; c++ {
				ang := sign * float64(pos[r%len(pos)]) * float64(inv[c])
				z := complex(x[base+c], x[base+c+half]) * complex(a, 0) * cmplx.Exp(complex(0, ang))
				y[base+c], y[base+c+half] = real(z), imag(z)
			}
		}
	}
	return y
}

// TestRoPEInvFreqGrad checks the explicit-frequency path (rope_scaling):
// forward against the complex-number rotation, backward by finite
// differences and against the transpose, with and without yarn's
// attention scale and with partial rotation.
func TestRoPEInvFreqGrad(t *testing.T) {
	pos := []int32{0, 3, 1, 70, 2, 0}
	inv := []float32{1, 0.3, 0.05, 0.001}
	var cases []opCase
	for _, sc := range []struct {
		name  string
		scale float32
		dims  int
	}{{"InvFreq", 0, 0}, {"InvFreqScaled", 1.25, 0}, {"InvFreqPartial", 1.1, 6}} {
		w := 8
		if sc.dims != 0 {
			w = sc.dims
		}
		a := float64(sc.scale)
		if a == 0 {
			a = 1
		}
		sc := sc
		cases = append(cases, opCase{
			name: "RoPE" + sc.name, shapes: [][]int{{6, 2, 8}},
			tape: func(tp *Tape, in []*Tensor) *Tensor {
				return tp.RoPE(in[0], RoPEConfig{Pos: pos, InvFreq: inv[:w/2], AttnScale: sc.scale, Dims: sc.dims})
			},
			ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
				return ropeNaiveInv(6, 2, 8, in[0], pos, inv[:w/2], a, 0, w, 1), func(dy []float64) [][]float64 {
					return [][]float64{ropeNaiveInv(6, 2, 8, dy, pos, inv[:w/2], a, 0, w, -1)}
				}
			},
		})
	}
	cases = append(cases, opCase{
		name: "RoPEInvFreqPartialHalf", shapes: [][]int{{6, 1, 8}},
		tape: func(tp *Tape, in []*Tensor) *Tensor {
			return tp.RoPE(in[0], RoPEConfig{Pos: pos, InvFreq: inv[:2], AttnScale: 0.9, Dims: 4})
		},
		ref: func(in [][]float64) ([]float64, func([]float64) [][]float64) {
			return ropeNaiveInv(6, 1, 8, in[0], pos, inv[:2], 0.9, 0, 4, 1), func(dy []float64) [][]float64 {
				return [][]float64{ropeNaiveInv(6, 1, 8, dy, pos, inv[:2], 0.9, 0, 4, -1)}
			}
		},
	})
	runCases(t, cases)
}

// TestRoPEInvFreqMatchesTheta: the default frequencies θ^(−2c/D) given
// explicitly rotate like the Theta path (to float32 rounding of the angle).
func TestRoPEInvFreqMatchesTheta(t *testing.T) {
	const d = 8
	x := Zeros(5, 2, d)
	for i := range x.Data {
		x.Data[i] = float32(math.Sin(float64(i)))
	}
	pos := []int32{0, 1, 2, 30, 400}
	inv := make([]float32, d/2)
	for c := range inv {
		inv[c] = float32(math.Pow(10000, -2*float64(c)/d))
	}
	a := (*Tape)(nil).RoPE(x, RoPEConfig{Theta: 10000, Pos: pos})
	b := (*Tape)(nil).RoPE(x, RoPEConfig{Pos: pos, InvFreq: inv})
	for i := range a.Data {
		if math.Abs(float64(a.Data[i]-b.Data[i])) > 1e-4 {
			t.Fatalf("element %d: Theta path %v, InvFreq path %v", i, a.Data[i], b.Data[i])
		}
	}
	if err := Catch(func() { (*Tape)(nil).RoPE(x, RoPEConfig{Pos: pos, InvFreq: inv[:3]}) }); err == nil {
		t.Error("RoPE accepted 3 inverse frequencies for 4 rotated pairs")
	}
}
