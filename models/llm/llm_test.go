package llm

import (
	"math"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
)

func tiny(t *testing.T) *Model {
	t.Helper()
	m, err := New(nn.NewParams(), nn.Rng(1), "", Config{Vocab: 50, Hidden: 16, Layers: 2, Heads: 2, FFN: 32, Theta: 10000})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func run(m *Model, ids []int32, lay Layout) *kernels.Tensor {
	x := m.EmbedTokens(nil, ids, 1, len(ids))
	return m.Logits(nil, m.Forward(nil, x, lay))
}

// TestPackedEqualsSeparate: two documents packed in one row with segment
// ids and restarting positions give the same logits as each run alone.
func TestPackedEqualsSeparate(t *testing.T) {
	m := tiny(t)
	a := []int32{3, 7, 9}
	b := []int32{4, 4, 8, 1}
	la, lb := run(m, a, Layout{}), run(m, b, Layout{})
	packed := run(m, append(append([]int32{}, a...), b...), Layout{
		Seg: []int32{0, 0, 0, 1, 1, 1, 1},
		Pos: []int32{0, 1, 2, 0, 1, 2, 3},
	})
	v := m.Cfg.Vocab
	want := append(append([]float32{}, la.Data...), lb.Data...)
	for i := range want {
		if math.Abs(float64(packed.Data[i]-want[i])) > 1e-4 {
			t.Fatalf("packed logit %d (token %d) = %v, separate run gives %v", i, i/v, packed.Data[i], want[i])
		}
	}
	// Without the segment mask the second document sees the first.
	leaky := run(m, append(append([]int32{}, a...), b...), Layout{Pos: []int32{0, 1, 2, 0, 1, 2, 3}})
	same := true
	for i := 3 * v; i < 7*v; i++ {
		same = same && math.Abs(float64(leaky.Data[i]-want[i])) < 1e-4
	}
	if same {
		t.Error("logits without segment ids equal the separate run: the test cannot tell masks apart")
	}
}

// TestCausal: changing a later token never changes earlier logits.
func TestCausal(t *testing.T) {
	m := tiny(t)
	x := run(m, []int32{1, 2, 3, 4}, Layout{})
	y := run(m, []int32{1, 2, 3, 9}, Layout{})
	v := m.Cfg.Vocab
	for i := 0; i < 3*v; i++ {
		if x.Data[i] != y.Data[i] {
			t.Fatalf("logit %d of token %d changed when token 3 changed", i%v, i/v)
		}
	}
	if x.Data[3*v] == y.Data[3*v] {
		t.Error("the changed token's own logits did not change")
	}
}

func TestParamCountAndTied(t *testing.T) {
	for _, tied := range []bool{false, true} {
		c := Config{Vocab: 50, Hidden: 16, Layers: 2, Heads: 2, FFN: 32, Tied: tied, QKVBias: !tied}
		p := nn.NewParams()
		m, err := New(p, nn.Rng(1), "llm.", c)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ParamCount(c), p.Count(); got != want {
			t.Errorf("ParamCount(tied=%v) = %d, built %d", tied, got, want)
		}
		if tied != (m.Head == m.Embed) || (p.Get("llm.lm_head.weight") == nil) != tied {
			t.Errorf("tied=%v: head shares embedding: %v", tied, m.Head == m.Embed)
		}
	}
	if err := (Config{Vocab: 5, Hidden: 6, Layers: 1, Heads: 4, FFN: 3}).Validate(); err == nil {
		t.Error("Validate accepted hidden 6 with 4 heads")
	}
}

// TestRecompute: the decoder with Recompute (activation checkpointing per
// block) gives the same loss and every parameter's gradient bit for bit.
func TestRecompute(t *testing.T) {
	p := nn.NewParams()
	m, err := New(p, nn.Rng(1), "", Config{Vocab: 50, Hidden: 16, Layers: 3, Heads: 2, FFN: 32, Theta: 10000})
	if err != nil {
		t.Fatal(err)
	}
	ids := []int32{3, 7, 9, 4, 4, 8, 1, 2}
	step := func() (float32, map[string][]float32) {
		p.ZeroGrad()
		tp := kernels.NewTape()
		x := m.EmbedTokens(tp, ids[:7], 1, 7)
		lg := tp.Reshape(m.Logits(tp, m.Forward(tp, x, Layout{})), 7, m.Cfg.Vocab)
		loss := tp.CrossEntropy(lg, ids[1:], kernels.CEOptions{})
		l := loss.Item()
		tp.Backward(loss)
		g := map[string][]float32{}
		for _, name := range p.Names() {
			g[name] = append([]float32(nil), p.Get(name).Grad...)
		}
		return l, g
	}
	wantLoss, want := step()
	m.Cfg.Recompute = true
	loss, got := step()
	if loss != wantLoss {
		t.Errorf("loss %v with Recompute, %v without", loss, wantLoss)
	}
	for name, w := range want {
		if len(w) == 0 {
			t.Errorf("%s: no gradient", name)
		}
		for i := range w {
			if got[name][i] != w[i] {
				t.Errorf("%s[%d]: gradient %v with Recompute, %v without", name, i, got[name][i], w[i])
				break
			}
		}
	}
}
