package qformer

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
)

var tinyCfg = Config{Hidden: 8, Layers: 3, Heads: 2, Intermediate: 16, Vocab: 30, MaxPos: 16, Queries: 3, CrossFreq: 2,
	VisionWidth: 6, EmbedDim: 4, TextSide: true, Objectives: true}

func feats() *kernels.Tensor {
	rng := rand.New(rand.NewPCG(1, 1))
	x := kernels.Zeros(2, 5, 6)
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	return x
}

// TestUniLMQueriesIgnoreText: with the ITG mask the query rows see only
// queries, so they equal the query-only pass (why LAVIS can reuse the
// query pass's key/value cache for ITG).
func TestUniLMQueriesIgnoreText(t *testing.T) {
	q, err := New(nn.NewParams(), nn.Rng(3), "qformer", tinyCfg)
	if err != nil {
		t.Fatal(err)
	}
	img := feats()
	alone := q.Forward(nil, Input{Queries: true, Image: img, B: 2})
	joint := q.Forward(nil, Input{Queries: true, Image: img, Text: []int32{1, 2, 3, 4, 5, 6, 7, 8}, B: 2, T: 4, Mask: UniLMMask})
	bidir := q.Forward(nil, Input{Queries: true, Image: img, Text: []int32{1, 2, 3, 4, 5, 6, 7, 8}, B: 2, T: 4})
	differs := false
	for b := 0; b < 2; b++ {
		for i := 0; i < 3*8; i++ {
			a, j := alone.Data[b*3*8+i], joint.Data[b*7*8+i]
			if math.Abs(float64(a-j)) > 1e-5 {
				t.Fatalf("row %d query value %d: UniLM pass %v, query-only pass %v", b, i, j, a)
			}
			differs = differs || math.Abs(float64(a-bidir.Data[b*7*8+i])) > 1e-5
		}
	}
	if !differs {
		t.Error("bidirectional queries equal the query-only pass: text did not reach them")
	}
}

func TestParamCountAndStage2(t *testing.T) {
	for _, c := range []Config{tinyCfg, func() Config { c := tinyCfg; c.Objectives = false; return c }(), func() Config { c := tinyCfg; c.TextSide, c.Objectives = false, false; return c }()} {
		p := nn.NewParams()
		if _, err := New(p, nn.Rng(1), "qformer", c); err != nil {
			t.Fatal(err)
		}
		if ParamCount(c) != p.Count() {
			t.Errorf("ParamCount(text=%v heads=%v) = %d, built %d", c.TextSide, c.Objectives, ParamCount(c), p.Count())
		}
	}
	// Cross-attention on layers 0 and 2 only (layer_num % 2 == 0).
	p := nn.NewParams()
	New(p, nn.Rng(1), "qformer", tinyCfg)
	for i, want := range []bool{true, false, true} {
		got := p.Get("qformer.layer."+string(rune('0'+i))+".crossattention.query.weight") != nil
		if got != want {
			t.Errorf("layer %d has cross-attention: %v, want %v", i, got, want)
		}
	}
	// Dropping the text side of a stage-1 tree leaves exactly the stage-2 tree.
	stage2 := tinyCfg
	stage2.TextSide, stage2.Objectives = false, false
	if _, err := p.Drop(TextSidePatterns("qformer")...); err != nil {
		t.Fatal(err)
	}
	if p.Count() != ParamCount(stage2) {
		t.Errorf("after dropping the text side: %d params, stage-2 Q-Former has %d", p.Count(), ParamCount(stage2))
	}
}

func TestDropout(t *testing.T) {
	c := tinyCfg
	c.Dropout = 0.5
	q, _ := New(nn.NewParams(), nn.Rng(3), "qformer", c)
	in := Input{Queries: true, Image: feats(), Text: []int32{1, 2, 3, 4, 5, 6, 7, 8}, B: 2, T: 4}
	eval := q.Forward(nil, in)
	in.Train, in.Seed = true, 7
	a, b := q.Forward(nil, in), q.Forward(nil, in)
	in.Seed = 8
	other := q.Forward(nil, in)
	same := func(x, y *kernels.Tensor) bool {
		for i := range x.Data {
			if x.Data[i] != y.Data[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Error("dropout with one seed is not reproducible")
	}
	if same(a, eval) || same(a, other) {
		t.Error("dropout changed nothing, or two seeds gave the same masks")
	}
}

// TestRowSeededDropout: with RowSeeds a row's dropout masks depend on its
// seed only: row 1 of a batch of 2 (text padded to 4) equals the same row
// run alone (padded to 3) with the same seed, bit for bit on its real
// positions; another seed changes it, and so does Train off.
func TestRowSeededDropout(t *testing.T) {
	c := tinyCfg
	c.Dropout = 0.3
	q, err := New(nn.NewParams(), nn.Rng(3), "qformer", c)
	if err != nil {
		t.Fatal(err)
	}
	img := feats()
	per := 5 * 6
	row1 := kernels.New(append([]float32(nil), img.Data[per:]...), 1, 5, 6)
	both := q.Forward(nil, Input{Queries: true, Image: img, Text: []int32{1, 2, 3, 4, 5, 6, 7, 0}, B: 2, T: 4, TextLens: []int{4, 3},
		Train: true, RowSeeds: []uint64{11, 22}})
	run := func(seed uint64, train bool) *kernels.Tensor {
		return q.Forward(nil, Input{Queries: true, Image: row1, Text: []int32{5, 6, 7}, B: 1, T: 3, TextLens: []int{3}, Train: train, RowSeeds: []uint64{seed}})
	}
	h := c.Hidden
	real := (c.Queries + 3) * h // row 1's real positions
	same := func(x *kernels.Tensor) bool {
		for i := 0; i < real; i++ {
			if x.Data[i] != both.Data[(c.Queries+4)*h+i] {
				return false
			}
		}
		return true
	}
	if !same(run(22, true)) {
		t.Errorf("row 1 alone with its seed differs from row 1 of the batch: its masks depend on the batch")
	}
	if same(run(23, true)) {
		t.Errorf("row 1 with another seed equals row 1 of the batch: the seed does not reach the masks")
	}
	if same(run(22, false)) {
		t.Errorf("row 1 without dropout equals row 1 with dropout: no unit was dropped")
	}
}
