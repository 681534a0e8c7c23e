package models

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/loomtrain/loom/kernels"
)

// fakeGroup is a hand-written in-process stand-in for the all-gather with
// gradient that the trainer builds from collective calls: members call
// Gather in the same order; the k-th call of every member meets the others'
// k-th call. Forward concatenates the members' rows; backward sums the
// members' gradients of the gathered tensor and gives each its rows.
type fakeGroup struct {
	mu      sync.Mutex
	cond    *sync.Cond
	members int
	calls   map[int]*fakeCall
}

type fakeCall struct {
	parts   [][]float32 // forward contributions, then backward gradients
	arrived int
}

func newFakeGroup(members int) *fakeGroup {
	g := &fakeGroup{members: members, calls: map[int]*fakeCall{}}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// exchange deposits data as member m's part of call k and returns every
// member's part once all have arrived.
func (g *fakeGroup) exchange(k, m int, data []float32) [][]float32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.calls[k]
	if c == nil {
		c = &fakeCall{parts: make([][]float32, g.members)}
		g.calls[k] = c
	}
	c.parts[m] = data
	c.arrived++
	if c.arrived == g.members {
		g.cond.Broadcast()
	}
	for c.arrived < g.members {
		g.cond.Wait()
	}
	return c.parts
}

// member returns member m's Gather function (each member has its own call
// counter: forward calls and backward calls count separately).
func (g *fakeGroup) member(m, rows int) func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	calls := 0
	return func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
		k := 2 * calls // even: forward, odd: its backward
		calls++
		var all []float32
		for _, p := range g.exchange(k, m, slices.Clone(x.Data)) {
			all = append(all, p...)
		}
		out := kernels.New(all, append([]int{g.members * rows}, x.Shape[1:]...)...)
		return tp.Custom("FakeAllGather", out, func() {
			per := x.Size() / rows
			xg := x.GradBuf()
			sum := make([]float32, len(out.Grad))
			for _, p := range g.exchange(k+1, m, slices.Clone(out.Grad)) {
				for i, v := range p {
					sum[i] += v
				}
			}
			for i := range xg {
				xg[i] += sum[m*rows*per+i]
			}
		}, x)
	}
}

// TestBLIP2Group: BLIP-2 stage 1 split over 2 and 4 group members (each
// weighted by its share of the rows) gives the loss and, within 1e-5 of
// its norm, the gradient of one batch holding every row: ITC over the
// whole group, the same ITM negatives, ITG rescaled to the group's tokens,
// the same dropout masks (row-seeded) when the Q-Former has dropout.
func TestBLIP2Group(t *testing.T) {
	for _, dropout := range []float32{0, 0.1} {
		t.Run(fmt.Sprintf("dropout %g", dropout), func(t *testing.T) { testBLIP2Group(t, dropout) })
	}
}

func testBLIP2Group(t *testing.T, dropout float32) {
	c, _ := Preset(BLIP2, "tiny")
	c.QFormer.Dropout = dropout
	const rows = 4
	full := tinyBatch(t, c, 4)
	full.Tokens = append(full.Tokens, append([]int32{c.Special.BOS}, 9, 8, 7, 6, 5))
	imgs := kernels.Zeros(rows, 3, c.ImageSize, c.ImageSize)
	copy(imgs.Data, full.Images.Data)
	for i := full.Images.Size(); i < imgs.Size(); i++ {
		imgs.Data[i] = float32(math.Cos(float64(i)))
	}
	full.Images = imgs
	grads := func(m Model) map[string][]float32 {
		out := map[string][]float32{}
		for _, p := range m.Params().Trainable() {
			out[p.Name] = p.Grad
		}
		return out
	}
	one, _ := New(c, 5)
	tp := kernels.NewTape()
	ref, err := one.Forward(tp, full)
	if err != nil {
		t.Fatal(err)
	}
	tp.Backward(ref.Loss)
	want := grads(one)

	for _, members := range []int{2, 4} {
		n := rows / members
		g := newFakeGroup(members)
		losses := make([]float64, members)
		got := make([]map[string][]float32, members)
		errs := make([]error, members)
		var wg sync.WaitGroup
		for m := 0; m < members; m++ {
			wg.Add(1)
			go func(m int) {
				defer wg.Done()
				model, _ := New(c, 5)
				per := full.Images.Size() / rows
				b := &Batch{Tokens: full.Tokens[m*n : (m+1)*n], Seed: 99,
					Images: kernels.New(slices.Clone(full.Images.Data[m*n*per:(m+1)*n*per]), n, 3, c.ImageSize, c.ImageSize),
					Group:  &Group{Offset: m * n, Tokens: full.Tokens, Seed: full.Seed, Gather: g.member(m, n)}}
				tp := kernels.NewTape()
				out, err := model.Forward(tp, b)
				if err != nil {
					errs[m] = err
					return
				}
				share := float32(n) / rows
				losses[m] = float64(share * out.Loss.Item())
				tp.Backward(tp.Scale(out.Loss, share))
				got[m] = grads(model)
			}(m)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		var loss float64
		for _, l := range losses {
			loss += l
		}
		if math.Abs(loss-float64(ref.Loss.Item())) > 1e-5*math.Abs(float64(ref.Loss.Item())) {
			t.Errorf("%d members: Σ share·loss = %v, one batch %v", members, loss, ref.Loss.Item())
		}
		var num, den float64
		for name, w := range want {
			for i, v := range w {
				var s float64
				for m := range got {
					if g := got[m][name]; g != nil {
						s += float64(g[i])
					}
				}
				num += (s - float64(v)) * (s - float64(v))
				den += float64(v) * float64(v)
			}
		}
		rel := math.Sqrt(num / den)
		t.Logf("%d members: loss %v vs %v, gradient differs by %.3g of its norm", members, loss, ref.Loss.Item(), rel)
		if rel > 1e-5 {
			t.Errorf("%d members: summed gradient differs from one batch's by %.3g of its norm, want ≤ 1e-5", members, rel)
		}
	}
}

// TestGroupRefused: a group whose rows do not hold the batch's, or a
// group on a model other than BLIP-2 stage 1, is refused naming the field.
func TestGroupRefused(t *testing.T) {
	c, _ := Preset(BLIP2, "tiny")
	m, _ := New(c, 1)
	b := tinyBatch(t, c, 1)
	id := func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor { return x }
	for _, tc := range []struct {
		g    *Group
		want string
	}{
		{&Group{Offset: 1, Tokens: b.Tokens, Gather: id}, "batch: group: offset 1"},
		{&Group{Offset: 0, Tokens: [][]int32{{1}, {2}, {3}}, Gather: id}, "batch: group: tokens[0] differs"},
		{&Group{Tokens: b.Tokens}, "batch: group: Gather is nil"},
	} {
		b.Group = tc.g
		if _, err := m.Forward(nil, b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Forward with group %+v: %v, want an error containing %q", tc.g, err, tc.want)
		}
	}
	c2, _ := Preset(LLaVA, "tiny")
	m2, _ := New(c2, 1)
	b2 := tinyBatch(t, c2, 1)
	b2.Group = &Group{Tokens: b2.Tokens, Gather: id}
	if _, err := m2.Forward(nil, b2); err == nil || !strings.Contains(err.Error(), "batch: group: only BLIP-2 stage 1") {
		t.Errorf("LLaVA Forward with a group: %v, want an error naming the group", err)
	}
}

// TestBLIP2GradCache: BLIP-2 stage 1 over a group contrasted ahead of time
// (GradCache: ContrastFeatures of every member, Contrast once, then each
// member's Forward and backward on its own, one after another, as gradient
// accumulation runs them) gives the loss and, within 1e-5 of its norm, the
// gradient of one batch holding every row, with 2 and 4 members, with and
// without dropout (row-seeded: the same masks in both passes and in the
// one batch); a member whose rows are not those the group was contrasted
// with is refused.
func TestBLIP2GradCache(t *testing.T) {
	for _, dropout := range []float32{0, 0.1} {
		t.Run(fmt.Sprintf("dropout %g", dropout), func(t *testing.T) { testBLIP2GradCache(t, dropout) })
	}
}

// randomImageText draws rows normal-noise images and rows captions (BOS
// then minTokens + i%spread random ids below 201) for c, images first.
func randomImageText(c Config, rng *rand.Rand, rows, minTokens, spread int) (*kernels.Tensor, [][]int32) {
	imgs := kernels.Zeros(rows, 3, c.ImageSize, c.ImageSize)
	for i := range imgs.Data {
		imgs.Data[i] = float32(rng.NormFloat64())
	}
	var toks [][]int32
	for i := 0; i < rows; i++ {
		row := []int32{c.Special.BOS}
		for k := 0; k < minTokens+i%spread; k++ {
			row = append(row, int32(rng.IntN(200))+1)
		}
		toks = append(toks, row)
	}
	return imgs, toks
}

func testBLIP2GradCache(t *testing.T, dropout float32) {
	c, _ := Preset(BLIP2, "tiny")
	c.QFormer.Dropout = dropout
	const rows = 8
	imgs, toks := randomImageText(c, rand.New(rand.NewPCG(3, 4)), rows, 3, 4)
	per := imgs.Size() / rows
	batch := func(lo, hi int) *Batch {
		return &Batch{Tokens: toks[lo:hi], Seed: 7, Images: kernels.New(slices.Clone(imgs.Data[lo*per:hi*per]), hi-lo, 3, c.ImageSize, c.ImageSize)}
	}
	grads := func(m Model) map[string][]float32 {
		out := map[string][]float32{}
		for _, p := range m.Params().Trainable() {
			out[p.Name] = slices.Clone(p.Grad)
		}
		return out
	}
	one, _ := New(c, 5)
	tp := kernels.NewTape()
	ref, err := one.Forward(tp, batch(0, rows))
	if err != nil {
		t.Fatal(err)
	}
	tp.Backward(ref.Loss)
	want := grads(one)

	type contrastive interface {
		ContrastFeatures(*Batch) (ContrastFeatures, error)
		Contrast(ContrastFeatures) (*Contrast, error)
	}
	for _, members := range []int{2, 4} {
		n := rows / members
		m, _ := New(c, 5)
		cm := m.(contrastive)
		var all ContrastFeatures
		for k := 0; k < members; k++ {
			b := batch(k*n, (k+1)*n)
			b.RowOffset = k * n // the dropout masks of global rows k·n…
			f, err := cm.ContrastFeatures(b)
			if err != nil {
				t.Fatal(err)
			}
			all.Image = append(all.Image, f.Image...)
			all.Text = append(all.Text, f.Text...)
			all.ViT = append(all.ViT, f.ViT...)
		}
		con, err := cm.Contrast(all)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(float64(con.Loss-ref.Terms["itc"])) > 1e-6 {
			t.Errorf("%d members: Contrast's ITC %v, one batch's %v", members, con.Loss, ref.Terms["itc"])
		}
		var loss float64
		for k := 0; k < members; k++ {
			b := batch(k*n, (k+1)*n)
			b.Group = &Group{Offset: k * n, Tokens: toks, Seed: 7, Contrast: con}
			tp := kernels.NewTape()
			out, err := m.Forward(tp, b)
			if err != nil {
				t.Fatal(err)
			}
			share := float32(n) / rows
			loss += float64(share * out.Loss.Item())
			tp.Backward(tp.Scale(out.Loss, share))
		}
		if math.Abs(loss-float64(ref.Loss.Item())) > 1e-5*math.Abs(float64(ref.Loss.Item())) {
			t.Errorf("%d members: Σ share·loss = %v, one batch %v", members, loss, ref.Loss.Item())
		}
		got := grads(m)
		var num, den float64
		for name, w := range want {
			for i, v := range w {
				d := float64(got[name][i]) - float64(v)
				num += d * d
				den += float64(v) * float64(v)
			}
		}
		rel := math.Sqrt(num / den)
		t.Logf("%d members: loss %v vs %v, gradient differs by %.3g of its norm", members, loss, ref.Loss.Item(), rel)
		if rel > 1e-5 {
			t.Errorf("%d members: accumulated gradient differs from one batch's by %.3g of its norm, want ≤ 1e-5", members, rel)
		}
		// Rows the group was not contrasted with.
		b := batch(0, n)
		b.Group = &Group{Offset: n, Tokens: slices.Concat(toks[n:2*n], toks[:n], toks[2*n:]), Seed: 7, Contrast: con}
		if _, err := m.Forward(nil, b); err == nil || !strings.Contains(err.Error(), "differ from the first pass") {
			t.Errorf("%d members: Forward with another batch's contrast: %v, want an error naming the first pass", members, err)
		}
	}
}
