package models

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/loomtrain/loom/kernels"
)

// Rows that share a caption are not each other's negatives: ITC's targets
// spread over them (LAVIS's sim_targets over positives) and ITM never
// draws one of them as a hard negative.
func TestBLIP2SharedCaptionsAreNotNegatives(t *testing.T) {
	c, _ := Preset(BLIP2, "tiny")
	// With dropout (LAVIS's 0.1) two rows' features differ even where
	// their captions are the same, so the targets matter; without it the
	// hard diagonal gives the same loss.
	c.QFormer.Dropout = 0.1
	const B = 6
	imgs, toks := randomImageText(c, rand.New(rand.NewPCG(5, 6)), B, 4, 3)
	toks[3] = slices.Clone(toks[0]) // rows 0 and 3 share a caption
	toks[5] = slices.Clone(toks[0]) // and row 5
	mm, _ := New(c, 5)
	m := mm.(*blip2)
	b := &Batch{Images: imgs, Tokens: toks, Seed: 1}
	f, err := m.ContrastFeatures(b)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := m.Contrast(f)
	if err != nil {
		t.Fatal(err)
	}
	// The float64 loss of the soft targets on the same similarities.
	ls := float64(c.LabelSmoothing)
	group := map[int][]int{0: {0, 3, 5}, 3: {0, 3, 5}, 5: {0, 3, 5}}
	target := func(i, j int) float64 {
		pos, ok := group[i]
		if !ok {
			pos = []int{i}
		}
		v := ls / B
		if slices.Contains(pos, j) {
			v += (1 - ls) / float64(len(pos))
		}
		return v
	}
	ce := func(at func(i, j int) float64) float64 {
		var sum float64
		for i := 0; i < B; i++ {
			mx := math.Inf(-1)
			for j := 0; j < B; j++ {
				mx = math.Max(mx, at(i, j))
			}
			var z float64
			for j := 0; j < B; j++ {
				z += math.Exp(at(i, j) - mx)
			}
			for j := 0; j < B; j++ {
				sum -= target(i, j) * (at(i, j) - mx - math.Log(z))
			}
		}
		return sum / B
	}
	sim := func(i, j int) float64 { return float64(ct.Sim[i*B+j]) }
	want := 0.5 * (ce(sim) + ce(func(i, j int) float64 { return sim(j, i) }))
	if math.Abs(float64(ct.Loss)-want) > 1e-5*want {
		t.Fatalf("Contrast ITC %.7g, soft-target reference %.7g", ct.Loss, want)
	}
	// Forward's ITC (the batch is its own group) is the same loss.
	out, err := m.Forward(kernels.NewTape(), b)
	if err != nil {
		t.Fatal(err)
	}
	if got := float64(out.Terms["itc"]); math.Abs(got-want) > 1e-5*want {
		t.Errorf("Forward ITC %.7g, want %.7g", got, want)
	}
	// With distinct captions the targets are the diagonal again.
	distinct := slices.Clone(toks)
	distinct[3], distinct[5] = toks[1], toks[2]
	distinct[3] = append(slices.Clone(distinct[3]), 7)
	distinct[5] = append(slices.Clone(distinct[5]), 9)
	if tg := itcTargets(distinct, nil, 0, B, c.LabelSmoothing); tg != nil {
		t.Errorf("targets %v for distinct captions, want nil (the diagonal)", tg.Data)
	}

	// ITM's negatives: never a row with the same caption.
	same := samePair(toks, nil)
	logits := make([]float32, B)
	for k := range logits {
		logits[k] = 10 // all equally likely
	}
	logits[3], logits[5] = 40, 40 // and the positives far likelier
	for n := 0; n < 500; n++ {
		if k := sampleNeg(rand.New(rand.NewPCG(uint64(n), 1)), logits, same(0)); k == 0 || k == 3 || k == 5 {
			t.Fatalf("draw %d: negative %d for row 0 shares its caption", n, k)
		}
	}
	// A group of one caption: only the row itself is excluded.
	if k := sampleNeg(rand.New(rand.NewPCG(1, 1)), logits[:3], []int{0, 1, 2}); k == 0 {
		t.Errorf("all rows share the caption: drew the row itself")
	}
}

// Rows that show the same image (equal Batch.ImageKeys: one image with
// several captions) are not each other's negatives either, with distinct
// captions: ITC's targets spread over them as over shared captions, in
// Forward and in Contrast alike, and ITM never draws them.
func TestBLIP2SameImageIsNotANegative(t *testing.T) {
	c, _ := Preset(BLIP2, "tiny")
	c.QFormer.Dropout = 0.1
	const B = 6
	imgs, toks := randomImageText(c, rand.New(rand.NewPCG(5, 6)), B, 4, 3)
	keys := []uint64{11, 12, 13, 11, 14, 0} // rows 0 and 3 show one image; 0 is unknown
	mm, _ := New(c, 5)
	m := mm.(*blip2)
	with := &Batch{Images: imgs, Tokens: toks, ImageKeys: keys, Seed: 1}
	without := &Batch{Images: imgs, Tokens: toks, Seed: 1}
	tg := itcTargets(toks, keys, 0, B, c.LabelSmoothing)
	if tg == nil {
		t.Fatal("no soft targets for rows 0 and 3, which show the same image")
	}
	ls := c.LabelSmoothing
	if want := (1-ls)/2 + ls/B; math.Abs(float64(tg.Data[0*B+3]-want)) > 1e-7 || math.Abs(float64(tg.Data[3*B+0]-want)) > 1e-7 {
		t.Errorf("target of row 0 for row 3 %v, of 3 for 0 %v; want %v", tg.Data[3], tg.Data[3*B], want)
	}
	if v := tg.Data[5*B+5]; math.Abs(float64(v-(1-ls)-ls/B)) > 1e-7 {
		t.Errorf("row 5 (key 0: unknown) target on itself %v, want the diagonal's %v", v, 1-ls+ls/B)
	}
	f, err := m.ContrastFeatures(with)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := m.Contrast(f)
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Forward(kernels.NewTape(), with)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Terms["itc"]; math.Abs(float64(got-ct.Loss)) > 1e-5*float64(ct.Loss) {
		t.Errorf("Forward ITC %v, Contrast %v: the image keys must reach both", got, ct.Loss)
	}
	plain, err := m.Forward(kernels.NewTape(), without)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Terms["itc"] == out.Terms["itc"] {
		t.Errorf("ITC %v with and without image keys: the keys change nothing", plain.Terms["itc"])
	}
	same := samePair(toks, keys)
	if got := same(0); !slices.Equal(got, []int{0, 3}) {
		t.Errorf("rows not negative to row 0: %v, want [0 3]", got)
	}
	if got := same(5); !slices.Equal(got, []int{5}) {
		t.Errorf("rows not negative to row 5 (unknown image): %v, want [5]", got)
	}
}
