package kernels

// BackwardWithHook is Backward that also reports, while the reverse sweep
// runs, when each leaf's gradient is final: ready(t) is called once for
// every leaf tensor t (one that requires a gradient and that no recorded
// op produced: a parameter, or a tensor marked with SetRequiresGrad) used as an
// input by some op on the tape, right after the backward rule of the
// earliest such op has run (or was skipped because no gradient reached it).
// No rule that runs later touches t.Grad, so ready may read t.Grad, copy it
// or hand it to another goroutine (a gradient all-reduce) while the sweep
// goes on; it must not write t.Grad. A leaf no recorded op used is never
// reported. Leaves whose earliest use is the same op are reported in the
// order of that op's inputs; across ops the order is the reverse of the
// recording order, which is a reverse topological order of the graph.
//
// ready runs on the caller's goroutine, between two backward rules: keep it
// short (copy and signal) so that it does not delay the sweep.
func (tp *Tape) BackwardWithHook(loss *Tensor, ready func(*Tensor)) {
	if loss.Size() != 1 {
		panic(shapeErr("BackwardWithHook", loss.Shape, nil, "loss must have one element (use BackwardFromWithHook for a tensor gradient)"))
	}
	tp.BackwardFromWithHook(loss, []float32{1}, ready)
}

// BackwardFromWithHook is BackwardFrom with BackwardWithHook's ready calls.
func (tp *Tape) BackwardFromWithHook(out *Tensor, grad []float32, ready func(*Tensor)) {
	if len(grad) != out.Size() {
		panic(shapeErr("BackwardFromWithHook", out.Shape, []int{len(grad)}, "gradient has %d values for %d", len(grad), out.Size()))
	}
	if tp == nil {
		return
	}
	if ready == nil {
		tp.sweep(out, grad, nil)
		return
	}
	fire := tp.leafSchedule()
	tp.sweep(out, grad, func(i int) {
		for _, t := range fire[i] {
			ready(t)
		}
	})
}

// leafSchedule returns, per node index i, the leaves whose earliest use on
// the tape is node i (in the order of that node's inputs). A reverse sweep
// past node i can no longer change their gradients.
func (tp *Tape) leafSchedule() [][]*Tensor {
	produced := make(map[*Tensor]struct{}, len(tp.nodes))
	for _, n := range tp.nodes {
		produced[n.out] = struct{}{}
	}
	seen := map[*Tensor]struct{}{}
	fire := make([][]*Tensor, len(tp.nodes))
	for i, n := range tp.nodes {
		for _, in := range n.inputs {
			if in == nil || !in.requiresGrad {
				continue
			}
			if _, ok := produced[in]; ok {
				continue
			}
			if _, ok := seen[in]; ok {
				continue
			}
			seen[in] = struct{}{}
			fire[i] = append(fire[i], in)
		}
	}
	return fire
}

// leafFirstUseNaive is the reference of leafSchedule (kept for the tests):
// for every leaf it scans all nodes for the smallest index that uses it.
func (tp *Tape) leafFirstUseNaive() map[*Tensor]int {
	out := map[*Tensor]int{}
	for i := range tp.nodes {
		for _, in := range tp.nodes[i].inputs {
			if in == nil || !in.requiresGrad {
				continue
			}
			isOut := false
			for _, m := range tp.nodes {
				if m.out == in {
					isOut = true
				}
			}
			if isOut {
				continue
			}
			if _, ok := out[in]; !ok {
				out[in] = i
			}
		}
	}
	return out
}

// Custom records an op computed outside the kernels, for example a
// collective (an all-gather across data-parallel workers whose backward
// is an all-reduce): out is its result, already computed from inputs;
// backward reads out.Grad and ACCUMULATES (+=) into the Grad of every
// input that requires one (GradBuf allocates it). It returns out, which
// requires a gradient when some input does and tp is not nil. As for every
// op, backward runs only if a gradient reached out.
func (tp *Tape) Custom(op string, out *Tensor, backward func(), inputs ...*Tensor) *Tensor {
	tp.record(op, out, backward, inputs...)
	return out
}

// GradBuf returns t.Grad, allocating zeros on first use (for Custom ops'
// backward functions).
func (t *Tensor) GradBuf() []float32 { return t.gradBuf() }
