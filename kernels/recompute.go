package kernels

// Recompute is activation checkpointing (torch.utils.checkpoint's
// non-reentrant form, FSDP2's per-block "full" activation checkpointing):
// y = fn(tp, x) runs without keeping its activations, and the backward
// pass runs fn again on a tape of its own to get them back, then
// backpropagates y's gradient through it. Peak memory holds one block's
// activations at a time instead of every block's; the price is a second
// forward pass of fn.
//
// fn must compute the same y from the same x both times: its parameters
// (leaves it reads, such as a block's weights) must not change between
// the forward and the backward pass, and its random choices must be
// functions of its inputs (Loom's dropout masks are row-seeded). The
// parameters' gradients accumulate into their Grad when the recomputation
// is backpropagated, in the order they would without Recompute, so they
// are bit-identical to fn recorded on tp directly when no op outside fn
// uses the same parameters (a tied embedding would sum in another order);
// x's gradient is computed apart and added to x.Grad, bit-identical when
// fn is x's only consumer (a block's input is).
//
// A leaf used only inside fn is not an input of any op on tp: a
// BackwardWithHook sweep does not report it (the caller's gradient
// all-reduce picks such leaves up at the end). When nothing in fn wants
// a gradient (a frozen tower), y is returned unrecorded and no
// recomputation happens. On a device tensor, or with a nil tape, fn
// simply runs on tp.
func (tp *Tape) Recompute(x *Tensor, fn func(tp *Tape, x *Tensor) *Tensor) *Tensor {
	if tp == nil || x.d != nil {
		return fn(tp, x)
	}
	// The first pass records on a tape of its own only to learn whether
	// anything in fn wants a gradient; resetting it drops the activations.
	probe := NewTape()
	y := fn(probe, &Tensor{Name: x.Name, Shape: x.Shape, Data: x.Data, requiresGrad: wants(x)})
	probe.Reset()
	if y.d != nil {
		panic(shapeErr("Recompute", x.Shape, y.Shape, "fn returned a device tensor for a host input"))
	}
	if !y.requiresGrad { // frozen throughout: nothing to recompute
		return y
	}
	y.tape = tp
	tp.nodes = append(tp.nodes, node{op: "Recompute", out: y, inputs: []*Tensor{x}, backward: func() {
		inner := NewTape()
		xl := &Tensor{Name: x.Name, Shape: x.Shape, Data: x.Data, requiresGrad: wants(x)}
		y2 := fn(inner, xl)
		inner.BackwardFrom(y2, y.Grad)
		if wants(x) && xl.Grad != nil {
			g := x.gradBuf()
			for i, v := range xl.Grad {
				g[i] += v
			}
		}
	}})
	return y
}
