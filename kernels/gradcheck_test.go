package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// refFn evaluates an op in float64: it returns the output and a function
// that maps an upstream gradient to the gradient of every input.
type refFn func(in [][]float64) (out []float64, back func(dout []float64) [][]float64)

// opCase is one op on one set of input shapes. tape runs the float32
// training path; ref runs the float64 reference (the generic kernel
// instantiated at float64, or a naive implementation).
type opCase struct {
	name   string
	shapes [][]int
	tape   func(tp *Tape, in []*Tensor) *Tensor
	ref    refFn
	// gen draws input i's element j; nil means N(0, 1).
	gen func(rng *rand.Rand, i, j int) float64
	// noGrad lists inputs that get no gradient (e.g. integer-like inputs).
	noGrad map[int]bool
	tol32  float64 // float32 path tolerance; 0 means 2e-4
}

func randInputs(rng *rand.Rand, c *opCase) [][]float64 {
	in := make([][]float64, len(c.shapes))
	for i, s := range c.shapes {
		in[i] = make([]float64, numel(s))
		for j := range in[i] {
			v := rng.NormFloat64()
			if c.gen != nil {
				v = c.gen(rng, i, j)
			}
			in[i][j] = float64(float32(v)) // representable in float32
		}
	}
	return in
}

func dot64(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func closeTo(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*(1+math.Abs(want))
}

// checkOp runs the three checks of every op: (1) central finite differences
// of the float64 reference, (2) float32 forward against float64, (3) float32
// backward (through the tape) against float64.
func checkOp(t *testing.T, c opCase) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, uint64(len(c.name))))
	in := randInputs(rng, &c)
	out, back := c.ref(in)
	r := make([]float64, len(out))
	for i := range r {
		r[i] = float64(float32(rng.NormFloat64()))
	}
	grads := back(r)

	// (1) finite differences in float64 on L = Σ r·f(x).
	const h = 1e-5
	for i := range in {
		if c.noGrad[i] {
			continue
		}
		for j := range in[i] {
			x0 := in[i][j]
			in[i][j] = x0 + h
			lp, _ := c.ref(in)
			in[i][j] = x0 - h
			lm, _ := c.ref(in)
			in[i][j] = x0
			num := (dot64(r, lp) - dot64(r, lm)) / (2 * h)
			if !closeTo(grads[i][j], num, 1e-5) {
				t.Errorf("%s%v: d/d input%d[%d]: analytic %.9g, finite difference %.9g", c.name, c.shapes, i, j, grads[i][j], num)
				return
			}
		}
	}

	// (2) and (3): the float32 path through a tape.
	tp := NewTape()
	ts := make([]*Tensor, len(in))
	for i := range in {
		d := make([]float32, len(in[i]))
		for j, v := range in[i] {
			d[j] = float32(v)
		}
		ts[i] = New(d, c.shapes[i]...)
		if !c.noGrad[i] {
			ts[i].SetRequiresGrad(true)
		}
	}
	o := c.tape(tp, ts)
	tol := c.tol32
	if tol == 0 {
		tol = 2e-4
	}
	if o.Size() != len(out) {
		t.Fatalf("%s%v: float32 output has %d values, reference %d", c.name, c.shapes, o.Size(), len(out))
	}
	for j, v := range o.Data {
		if !closeTo(float64(v), out[j], tol) {
			t.Errorf("%s%v: forward[%d] = %.7g, want %.7g", c.name, c.shapes, j, v, out[j])
			return
		}
	}
	r32 := make([]float32, len(r))
	for j, v := range r {
		r32[j] = float32(v)
	}
	tp.BackwardFrom(o, r32)
	for i := range in {
		if c.noGrad[i] {
			continue
		}
		if ts[i].Grad == nil {
			t.Errorf("%s%v: input %d got no gradient", c.name, c.shapes, i)
			continue
		}
		for j, v := range ts[i].Grad {
			if !closeTo(float64(v), grads[i][j], tol) {
				t.Errorf("%s%v: grad input%d[%d] = %.7g, want %.7g", c.name, c.shapes, i, j, v, grads[i][j])
				break
			}
		}
	}
}

func runCases(t *testing.T, cases []opCase) {
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s%v", c.name, c.shapes), func(t *testing.T) { checkOp(t, c) })
	}
}

func zerosLike(in [][]float64) [][]float64 {
	out := make([][]float64, len(in))
	for i := range in {
		out[i] = make([]float64, len(in[i]))
	}
	return out
}
