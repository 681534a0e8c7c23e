package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/loomtrain/loom/kernels/internal/device"
)

// Tensor is a dense, contiguous, row-major float32 array with a shape.
//
// Data always holds exactly Size() elements in row-major order; every op
// returns a fresh contiguous tensor (Reshape shares Data, since no op writes
// into its inputs). Grad is nil until a backward pass reaches the tensor, then
// it has the length of Data. Gradients of parameters ACCUMULATE (+=) across
// Backward calls, so gradient accumulation over micro-batches works; call
// ZeroGrad (or Optimizer.Step, which does not zero) between steps.
type Tensor struct {
	Name  string    // optional; parameters are named ("blocks.0.attn.wq"), errors and checkpoints use it
	Shape []int     // the dimensions, outermost first; a scalar has shape [] or [1]
	Data  []float32 // Size() values, row-major
	Grad  []float32 // nil, or Size() values: d(loss)/d(Data)

	requiresGrad bool
	tape         *Tape      // the tape whose op produced t (it recycles t.Grad during its backward sweep), or nil
	d            *devTensor // nil on the host; else the device buffers (Data and Grad are then nil)
}

// New wraps data (not copied) as a tensor of the given shape. It panics with
// a *ShapeError when len(data) differs from the product of shape.
func New(data []float32, shape ...int) *Tensor {
	n := checkShape("New", shape)
	if len(data) != n {
		panic(&ShapeError{Op: "New", A: shape, Msg: fmt.Sprintf("data has %d values, shape needs %d", len(data), n)})
	}
	return &Tensor{Shape: append([]int(nil), shape...), Data: data}
}

// Zeros returns a tensor of zeros.
func Zeros(shape ...int) *Tensor {
	n := checkShape("Zeros", shape)
	return &Tensor{Shape: append([]int(nil), shape...), Data: make([]float32, n)}
}

// Full returns a tensor filled with v.
func Full(v float32, shape ...int) *Tensor {
	t := Zeros(shape...)
	for i := range t.Data {
		t.Data[i] = v
	}
	return t
}

// Scalar returns a one-element tensor of shape [1].
func Scalar(v float32) *Tensor { return New([]float32{v}, 1) }

// NewParam returns a named, zero-initialised tensor that requires gradients.
// Initialise it with one of the Init* methods or by writing Data.
func NewParam(name string, shape ...int) *Tensor {
	t := Zeros(shape...)
	t.Name = name
	t.requiresGrad = true
	return t
}

// RequiresGrad reports whether a backward pass computes Grad for t. It is
// true for parameters and for every op output that depends on one.
func (t *Tensor) RequiresGrad() bool { return t.requiresGrad }

// SetRequiresGrad marks t as a leaf that wants (or does not want) a
// gradient, e.g. to freeze a parameter or to get the gradient of an input.
func (t *Tensor) SetRequiresGrad(v bool) *Tensor { t.requiresGrad = v; return t }

// Size is the number of elements.
func (t *Tensor) Size() int {
	if t.d != nil {
		return t.d.n
	}
	return len(t.Data)
}

// Dim returns the size of dimension i; negative i counts from the end.
func (t *Tensor) Dim(i int) int {
	if i < 0 {
		i += len(t.Shape)
	}
	if i < 0 || i >= len(t.Shape) {
		panic(&ShapeError{Op: "Dim", A: t.Shape, Msg: fmt.Sprintf("no dimension %d", i)})
	}
	return t.Shape[i]
}

// Item returns the single value of a one-element tensor.
// A device tensor's value is downloaded (waiting for the device).
func (t *Tensor) Item() float32 {
	if t.Size() != 1 {
		panic(&ShapeError{Op: "Item", A: t.Shape, Msg: "tensor has more than one element"})
	}
	if t.d != nil {
		return t.HostData()[0]
	}
	return t.Data[0]
}

// ZeroGrad sets Grad to zero (keeping its allocation) if it exists.
func (t *Tensor) ZeroGrad() {
	if t.d != nil {
		if t.d.grad != nil {
			t.d.be.Fill(device.View{Buf: t.d.grad}, t.d.n, 0)
		}
		return
	}
	for i := range t.Grad {
		t.Grad[i] = 0
	}
}

// Clone returns a deep copy of Data and Shape (not Grad), detached from any
// tape, on t's device.
func (t *Tensor) Clone() *Tensor {
	if t.d != nil {
		c := newOnDevice(t.d.be, t.d.spec, t.Shape)
		t.d.be.Copy(device.View{Buf: c.d.data}, device.View{Buf: t.d.data}, t.d.n)
		c.Name = t.Name
		return c
	}
	c := New(append([]float32(nil), t.Data...), t.Shape...)
	c.Name = t.Name
	return c
}

// String prints the name and shape, not the values.
func (t *Tensor) String() string {
	if t.Name != "" {
		return fmt.Sprintf("%s%v", t.Name, t.Shape)
	}
	return fmt.Sprintf("tensor%v", t.Shape)
}

// InitNormal fills t with N(0, std²) values drawn from rng.
func (t *Tensor) InitNormal(rng *rand.Rand, std float32) *Tensor {
	for i := range t.Data {
		t.Data[i] = float32(rng.NormFloat64()) * std
	}
	return t
}

// InitUniform fills t with values uniform in [-a, a).
func (t *Tensor) InitUniform(rng *rand.Rand, a float32) *Tensor {
	for i := range t.Data {
		t.Data[i] = (2*rng.Float32() - 1) * a
	}
	return t
}

// InitXavier fills a [out, in] weight with U(±sqrt(6/(in+out))).
func (t *Tensor) InitXavier(rng *rand.Rand) *Tensor {
	if len(t.Shape) < 2 {
		panic(&ShapeError{Op: "InitXavier", A: t.Shape, Msg: "need at least 2 dimensions"})
	}
	fanOut, fanIn := t.Shape[0], t.Size()/t.Shape[0]
	return t.InitUniform(rng, float32(math.Sqrt(6/float64(fanIn+fanOut))))
}

// Fill sets every element to v.
func (t *Tensor) Fill(v float32) *Tensor {
	for i := range t.Data {
		t.Data[i] = v
	}
	return t
}

// sameShape reports whether a and b have identical dimensions.
func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// numel is the product of shape (1 for a scalar []).
func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// maxElems bounds the size of one tensor so that shape arithmetic cannot
// overflow int (and a corrupt shape fails with a message, not an OOM).
const maxElems = min(1<<40, math.MaxInt/4)

// checkShape validates dimensions (non-negative, bounded product) and
// returns the element count.
func checkShape(op string, shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			panic(&ShapeError{Op: op, A: shape, Msg: "negative dimension"})
		}
		if d != 0 && n > maxElems/d {
			panic(&ShapeError{Op: op, A: shape, Msg: "too many elements"})
		}
		n *= d
	}
	return n
}
