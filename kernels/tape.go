package kernels

import (
	"fmt"
	"unsafe"
)

// Tape records the ops of one forward pass so that Backward can run their
// gradient rules in reverse order.
//
// Every op is a method on *Tape: it computes its output at once and, when
// some input requires a gradient, appends one closure holding that op's
// backward rule (llm.c's paired forward/backward functions, composed by the
// tape). A nil *Tape is valid and records nothing: use it for inference.
//
// A Tape is not safe for concurrent use; use one per goroutine (ops run
// their inner loops in parallel themselves).
type Tape struct {
	nodes []node

	// During a sweep, the gradient buffers of op outputs whose backward
	// rule has run are dead (every consumer ran earlier in the reverse
	// order); sweep recycles them here, by length, and gradBuf of a tensor
	// this tape produced takes one (cleared) instead of allocating fresh
	// memory. Empty outside a sweep.
	sweeping  bool
	free      map[int][][]float32
	noRecycle bool // tests: the reference sweep that allocates every buffer
}

type node struct {
	op       string
	out      *Tensor
	inputs   []*Tensor // what backward may accumulate into (BackwardWithHook)
	backward func()    // reads out.Grad, accumulates into the inputs' Grad
}

// NewTape returns an empty tape.
func NewTape() *Tape { return &Tape{} }

// Len is the number of recorded ops.
func (tp *Tape) Len() int {
	if tp == nil {
		return 0
	}
	return len(tp.nodes)
}

// Reset forgets the recorded ops (the parameters keep their Grad).
func (tp *Tape) Reset() {
	if tp != nil {
		clear(tp.nodes) // drop the closures (and the activations they hold): a tensor that outlives the sweep references the tape
		tp.nodes = tp.nodes[:0]
	}
}

// record appends the backward rule of op when any input requires a
// gradient, and marks out as requiring one. It reports whether it recorded.
func (tp *Tape) record(op string, out *Tensor, backward func(), inputs ...*Tensor) bool {
	if tp == nil {
		return false
	}
	need := false
	for _, in := range inputs {
		if in != nil && in.requiresGrad {
			need = true
			break
		}
	}
	if !need {
		return false
	}
	out.requiresGrad = true
	out.tape = tp
	tp.nodes = append(tp.nodes, node{op: op, out: out, inputs: inputs, backward: backward})
	return true
}

// Backward computes the gradient of the scalar loss with respect to every
// tensor recorded on the tape that requires one: it seeds d(loss)=1 and runs
// the recorded rules in reverse. Parameter gradients accumulate (+=) into
// their existing Grad. The Grad of intermediate (op output) tensors is
// unspecified afterwards: a Reshape or Add may hand its gradient buffer to
// its input instead of copying it, and the sweep reuses the buffer of an
// op output once its rule has run (that output's Grad is then nil), so a
// backward pass allocates little fresh memory. Leaves (parameters, tensors
// marked with SetRequiresGrad) never share a buffer. The tape is reset
// afterwards.
func (tp *Tape) Backward(loss *Tensor) {
	if loss.Size() != 1 {
		panic(shapeErr("Backward", loss.Shape, nil, "loss must have one element (use BackwardFrom for a tensor gradient)"))
	}
	tp.BackwardFrom(loss, []float32{1})
}

// BackwardFrom runs the backward pass from out with the given upstream
// gradient d(loss)/d(out) (len(grad) == out.Size()).
func (tp *Tape) BackwardFrom(out *Tensor, grad []float32) {
	if len(grad) != out.Size() {
		panic(shapeErr("BackwardFrom", out.Shape, []int{len(grad)}, "gradient has %d values for %d", len(grad), out.Size()))
	}
	if tp == nil {
		return
	}
	tp.sweep(out, grad, nil)
}

// sweep seeds out's gradient and runs the recorded rules in reverse,
// calling after(i) once node i is done (run, or skipped because no
// gradient reached it) when after is not nil.
func (tp *Tape) sweep(out *Tensor, grad []float32, after func(i int)) {
	if out.d != nil {
		out.seedDevGrad(grad)
	} else {
		g := out.gradBuf()
		for i, v := range grad {
			g[i] += v
		}
	}
	tp.sweeping = true
	defer func() { tp.sweeping, tp.free = false, nil }()
	for i := len(tp.nodes) - 1; i >= 0; i-- {
		n := tp.nodes[i]
		if n.out.Grad != nil || n.out.d.hasGrad() { // else no gradient reached this op
			n.backward()
			tp.recycle(n)
		}
		if after != nil {
			after(i)
		}
	}
	clear(tp.nodes) // drop the closures (and the activations they hold): a tensor that outlives the sweep references the tape
	tp.nodes = tp.nodes[:0]
}

// recycle puts the gradient buffer of n's output, which no later rule of
// the sweep reads, into the free list, unless the rule handed it to an
// input (Reshape, Add) or the output is one of its own inputs. The
// output's Grad becomes nil (intermediate gradients are unspecified after
// Backward).
func (tp *Tape) recycle(n node) {
	g := n.out.Grad
	if len(g) == 0 || n.out.tape != tp || tp.noRecycle {
		return
	}
	for _, in := range n.inputs {
		if in == nil {
			continue
		}
		if in == n.out || overlaps(in.Grad, g) {
			return
		}
	}
	n.out.Grad = nil
	if tp.free == nil {
		tp.free = map[int][][]float32{}
	}
	tp.free[len(g)] = append(tp.free[len(g)], g)
}

// overlaps reports whether slices a and b share memory.
func overlaps(a, b []float32) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	a0, b0 := uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&b[0]))
	return a0 < b0+uintptr(len(b))*4 && b0 < a0+uintptr(len(a))*4
}

// gradBuf returns t.Grad, allocating zeros on first use. During a
// backward sweep of the tape that produced t, the buffer comes from the
// tape's recycled gradients when one of the right length is free.
func (t *Tensor) gradBuf() []float32 {
	if t.Grad == nil {
		if g := t.recycledGrad(); g != nil {
			clear(g)
			return g
		}
		t.Grad = make([]float32, len(t.Data))
	}
	return t.Grad
}

// gradDst is gradBuf for a rule that can either overwrite or accumulate
// (a GEMM with beta 0 or 1). When fresh is true, g has just become t.Grad
// and may hold garbage (a recycled buffer, not cleared): the rule must
// write every element. Otherwise g already holds gradient and the rule
// must add to it.
func (t *Tensor) gradDst() (g []float32, fresh bool) {
	if t.Grad != nil {
		return t.Grad, false
	}
	if g := t.recycledGrad(); g != nil {
		return g, true
	}
	t.Grad = make([]float32, len(t.Data))
	return t.Grad, true
}

// recycledGrad makes a free buffer of the sweeping tape t's gradient
// (not cleared) and returns it, or returns nil when there is none.
func (t *Tensor) recycledGrad() []float32 {
	tp := t.tape
	if tp == nil || !tp.sweeping {
		return nil
	}
	l := tp.free[len(t.Data)]
	if len(l) == 0 {
		return nil
	}
	g := l[len(l)-1]
	l[len(l)-1] = nil
	tp.free[len(t.Data)] = l[:len(l)-1]
	t.Grad = g
	return g
}

// wants reports whether a backward rule must produce a gradient for t.
func wants(t *Tensor) bool { return t != nil && t.requiresGrad }

// Detach returns a tensor sharing t's data that no gradient flows through.
func Detach(t *Tensor) *Tensor {
	if t.d != nil {
		return &Tensor{Name: t.Name, Shape: t.Shape, d: &devTensor{be: t.d.be, spec: t.d.spec, n: t.d.n, data: t.d.data}}
	}
	return &Tensor{Name: t.Name, Shape: t.Shape, Data: t.Data}
}

func (n node) String() string { return fmt.Sprintf("%s -> %v", n.op, n.out.Shape) }
