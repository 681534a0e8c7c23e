package shard_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/loomtrain/loom/shard"
)

func TestRankSlice(t *testing.T) {
	cases := []struct{ batch, world int }{{8, 4}, {10, 3}, {3, 4}, {1, 1}, {7, 7}, {100, 6}}
	for _, c := range cases {
		next := 0
		for r := 0; r < c.world; r++ {
			start, n := shard.RankSlice(c.batch, r, c.world)
			if start != next {
				t.Errorf("RankSlice(%d, %d, %d) starts at %d, want %d", c.batch, r, c.world, start, next)
			}
			if n < c.batch/c.world || n > c.batch/c.world+1 {
				t.Errorf("RankSlice(%d, %d, %d) takes %d, want %d or %d", c.batch, r, c.world, n, c.batch/c.world, c.batch/c.world+1)
			}
			next = start + n
		}
		if next != c.batch {
			t.Errorf("RankSlice(%d, *, %d) covers %d samples, want %d", c.batch, c.world, next, c.batch)
		}
	}
}

// TestResizeFourToThree runs a job with 4 workers for s steps, checkpoints
// the O(1) state, and resumes it with 3 workers. The logged sample ids must
// be exactly the single-worker order: none twice, none skipped.
func TestResizeFourToThree(t *testing.T) {
	rows := []int64{37, 50, 12, 81, 44, 29}
	o, err := shard.NewOrder(rows, 1234, 40)
	if err != nil {
		t.Fatal(err)
	}
	const batch, steps, resizeAt = 12, 40, 17 // 40 steps of 12 = 480 > 253 rows: crosses epochs
	s := shard.Sampler{Order: o, Batch: batch}
	id := func(l shard.Loc) string { return fmt.Sprintf("%d/%d", l.Shard, l.Row) }

	// The reference: one worker.
	var want []string
	st := shard.State{Seed: 1234}
	for step := 0; step < steps; step++ {
		for _, l := range s.RankBatch(st, 0, 1) {
			want = append(want, id(l))
		}
		st = s.Next(st)
	}

	var got []string
	st = shard.State{Seed: 1234}
	world := 4
	for step := 0; step < steps; step++ {
		if step == resizeAt {
			// Checkpoint: only the O(1) state survives; a new job with a
			// different world size rebuilds the order from the index.
			saved := st
			o2, _ := shard.NewOrder(rows, saved.Seed, 40)
			s = shard.Sampler{Order: o2, Batch: batch}
			st, world = saved, 3
		}
		for r := 0; r < world; r++ {
			for _, l := range s.RankBatch(st, r, world) {
				got = append(got, id(l))
			}
		}
		st = s.Next(st)
	}
	if len(got) != len(want) {
		t.Fatalf("resized job logged %d samples, single worker %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sample %d: resized job read %s, single worker %s", i, got[i], want[i])
		}
	}
	// Within each epoch every sample appears exactly once.
	total := int(o.Len())
	for e := 0; (e+1)*total <= len(got); e++ {
		seen := map[string]bool{}
		for _, x := range got[e*total : (e+1)*total] {
			if seen[x] {
				t.Fatalf("epoch %d: sample %s read twice", e, x)
			}
			seen[x] = true
		}
		if len(seen) != total {
			t.Fatalf("epoch %d: %d distinct samples, want %d", e, len(seen), total)
		}
	}
	if st.Epoch != int64(steps*batch)/o.Len() || st.Consumed != int64(steps*batch)%o.Len() {
		t.Errorf("final state %+v, want epoch %d consumed %d", st, int64(steps*batch)/o.Len(), int64(steps*batch)%o.Len())
	}
}

func TestMixedSamplerWeightsAndResume(t *testing.T) {
	mix, err := shard.NewMixture([]float64{84, 16}, 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := shard.NewOrder([]int64{300, 200}, 5, 100)
	b, _ := shard.NewOrder([]int64{50}, 6, 0)
	s := shard.MixedSampler{Mix: mix, Orders: []*shard.Order{a, b}, Batch: 64}
	counts := [2]int{}
	seen := [2]map[shard.Loc]int{{}, {}}
	for g := int64(0); g < 20000; g++ {
		l := s.Global(g)
		counts[l.Source]++
		seen[l.Source][l.Loc]++
	}
	if math.Abs(float64(counts[0])/20000-0.84) > 0.001 {
		t.Errorf("source 0 drew %d of 20000, want 84%%", counts[0])
	}
	// Source 1 (50 rows) cycled through its epochs evenly.
	for l, n := range seen[1] {
		if n < counts[1]/50 || n > counts[1]/50+1 {
			t.Errorf("source 1 sample %v drawn %d times of %d, want an even spread", l, n, counts[1])
		}
	}
	// Rank slices at any world size rebuild the same global sequence.
	for _, world := range []int{1, 3, 4} {
		var seq []shard.MixLoc
		for k := int64(0); k < 5; k++ {
			for r := 0; r < world; r++ {
				seq = append(seq, s.RankBatch(k*64, r, world)...)
			}
		}
		for i, l := range seq {
			if l != s.Global(int64(i)) {
				t.Fatalf("world %d: position %d = %v, want %v", world, i, l, s.Global(int64(i)))
			}
		}
	}
}

func TestPackMatchesUnpackedLoss(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var samples []shard.PackInput
	for i := 0; i < 200; i++ {
		n := 1 + r.IntN(40)
		in := shard.PackInput{Tokens: make([]int32, n)}
		if i%3 == 0 {
			in.Loss = make([]bool, n)
			for j := range in.Loss {
				in.Loss[j] = r.IntN(3) > 0
			}
		}
		for j := range in.Tokens {
			in.Tokens[j] = int32(r.IntN(1000))
		}
		samples = append(samples, in)
	}
	// A per-token loss that depends on the token and its position within
	// its own sample, so it is the same packed or unpacked.
	tokLoss := func(tok int32, pos int32) float64 { return float64(tok%97)/10 + float64(pos)*0.01 }

	// Unpacked reference: mean over samples of each sample's mean loss.
	var ref float64
	nref := 0
	for _, s := range samples {
		var sum float64
		m := 0
		for j, tok := range s.Tokens {
			if s.Loss == nil || s.Loss[j] {
				sum += tokLoss(tok, int32(j))
				m++
			}
		}
		if m > 0 {
			ref += sum / float64(m)
			nref++
		}
	}
	ref /= float64(nref)

	packed, err := shard.Pack(samples, 64, -1)
	if err != nil {
		t.Fatal(err)
	}
	var num float64
	segs := 0
	placed := 0
	for _, p := range packed {
		for i := range p.Tokens {
			if p.SegmentIDs[i] == 0 {
				if p.Tokens[i] != -1 || p.LossWeights[i] != 0 {
					t.Fatalf("padding at %d: token %d weight %v", i, p.Tokens[i], p.LossWeights[i])
				}
				continue
			}
			if i > 0 && p.SegmentIDs[i] == p.SegmentIDs[i-1] && p.Positions[i] != p.Positions[i-1]+1 {
				t.Fatalf("positions do not count up within a segment at %d", i)
			}
			if (i == 0 || p.SegmentIDs[i] != p.SegmentIDs[i-1]) && p.Positions[i] != 0 {
				t.Fatalf("segment starts at position %d, want 0", p.Positions[i])
			}
			num += float64(p.LossWeights[i]) * tokLoss(p.Tokens[i], p.Positions[i])
			placed++
		}
		segs += p.Segments
	}
	if segs != nref {
		t.Fatalf("packed segments with loss = %d, want %d", segs, nref)
	}
	got := num / float64(segs)
	if math.Abs(got-ref) > 1e-4*math.Abs(ref) {
		t.Errorf("packed weighted loss %v, unpacked mean of means %v", got, ref)
	}
	want := 0
	for _, s := range samples {
		want += len(s.Tokens)
	}
	if placed != want {
		t.Errorf("packed %d tokens, want %d", placed, want)
	}
	if len(packed) > want/64+want/64/2+2 {
		t.Errorf("%d sequences of 64 for %d tokens: packing too loose", len(packed), want)
	}
}

func TestPackTruncatesAndRejects(t *testing.T) {
	p, err := shard.Pack([]shard.PackInput{{Tokens: []int32{1, 2, 3, 4, 5}}, {Tokens: []int32{6}}}, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 2 || fmt.Sprint(p[0].Tokens) != "[1 2 3 4]" || fmt.Sprint(p[1].Tokens) != "[6 0 0 0]" {
		t.Fatalf("Pack = %+v", p)
	}
	if _, err := shard.Pack([]shard.PackInput{{Tokens: []int32{1, 2}, Loss: []bool{true}}}, 4, 0); err == nil {
		t.Error("Pack with mismatched loss flags succeeded")
	}
}
