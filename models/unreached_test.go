package models

import (
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
)

// TestUnreached: the parameters Config.Unreached names get no gradient
// from InstructBLIP's loss (the last Q-Former layer's text FFN only
// transforms the discarded instruction outputs), while the same FFN of an
// earlier layer, whose outputs the next layer's self-attention reads, and
// every other trainable parameter do; the other families name none.
func TestUnreached(t *testing.T) {
	c, _ := Preset(InstructBLIP, "tiny")
	pats := c.Unreached()
	if len(pats) != 2 {
		t.Fatalf("Unreached() = %v, want the last layer's intermediate and output", pats)
	}
	m, err := New(c, 4)
	if err != nil {
		t.Fatal(err)
	}
	tp := kernels.NewTape()
	m.Params().ZeroGrad()
	out, err := m.Forward(tp, tinyBatch(t, c, 1))
	if err != nil {
		t.Fatal(err)
	}
	tp.Backward(out.Loss)
	ps := m.Params()
	n := 0
	for _, name := range ps.Names() {
		if ps.Frozen(name) {
			continue
		}
		nonzero := false
		for _, g := range ps.Get(name).Grad {
			nonzero = nonzero || g != 0
		}
		unreached := nn.Match(name, pats...)
		if unreached {
			n++
		}
		if unreached == nonzero {
			t.Errorf("%s: gradient nonzero %v, Unreached %v", name, nonzero, unreached)
		}
	}
	if n == 0 {
		t.Fatalf("no parameter matches %v", pats)
	}
	for _, f := range Families {
		if f == InstructBLIP {
			continue
		}
		if c, _ := Preset(f, "tiny"); c.Unreached() != nil {
			t.Errorf("%s: Unreached() = %v, want none", f, c.Unreached())
		}
	}
}
