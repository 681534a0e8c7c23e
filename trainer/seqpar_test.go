package trainer

import (
	"context"
	"github.com/loomtrain/loom/shard"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models"
)

// TestSeqParallelMatchesModel: the sequence-parallel decoder (ring
// attention over 2 and 4 ranks, zigzag) gives the loss and the parameter
// gradients of models' LWM forward on the whole packed row (two documents,
// text and vision tokens), summed over the ranks.
func TestSeqParallelMatchesModel(t *testing.T) {
	cfg, err := models.Preset(models.LWM, "tiny")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	const total = 48
	row := spRow{Tokens: make([]int32, total), Vision: make([]bool, total), Loss: make([]bool, total), Seg: make([]int32, total)}
	for i := range row.Tokens {
		row.Seg[i] = 1
		if i >= 20 {
			row.Seg[i] = 2
		}
		row.Vision[i] = (i >= 6 && i < 14) || (i >= 30 && i < 40)
		if row.Vision[i] {
			row.Tokens[i] = int32(rng.IntN(cfg.Codebook))
		} else {
			row.Tokens[i] = int32(rng.IntN(200))
		}
		row.Loss[i] = i%5 != 0
	}
	ref, err := models.New(cfg, 9)
	if err != nil {
		t.Fatal(err)
	}
	tp := kernels.NewTape()
	out, err := ref.Forward(tp, &models.Batch{Tokens: [][]int32{row.Tokens}, Vision: [][]bool{row.Vision}, Loss: [][]bool{row.Loss}, Segments: [][]int32{row.Seg}})
	if err != nil {
		t.Fatal(err)
	}
	tp.Backward(out.Loss)
	var nText, nVis int
	for i := 0; i+1 < total; i++ {
		if row.Loss[i+1] && row.Seg[i+1] == row.Seg[i] {
			if row.Vision[i+1] {
				nVis++
			} else {
				nText++
			}
		}
	}
	for _, world := range []int{2, 4} {
		for _, layout := range []collective.Layout{collective.Zigzag, collective.Contiguous} {
			cs := comms(t, world, 1)
			ms := make([]models.Model, world)
			parts := make([]float64, world)
			errs := make([]error, world)
			var wg sync.WaitGroup
			for r := 0; r < world; r++ {
				if ms[r], err = models.New(cfg, 9); err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func(r int) {
					defer wg.Done()
					sp := &seqParallel{comm: cs[r], p: ms[r].Params(), cfg: cfg, layout: layout}
					parts[r], _, errs[r] = sp.step(context.Background(), row, 0.5/float64(nText), 0.5/float64(nVis))
				}(r)
			}
			wg.Wait()
			var loss float64
			for r := range parts {
				if errs[r] != nil {
					t.Fatal(errs[r])
				}
				loss += parts[r]
			}
			if d := math.Abs(loss - float64(out.Loss.Item())); d > 1e-5*math.Abs(loss) {
				t.Errorf("world %d layout %d: loss %v, models %v", world, layout, loss, out.Loss.Item())
			}
			for _, name := range ref.Params().Names() {
				want := ref.Params().Get(name).Grad
				got := make([]float64, len(want))
				for r := 0; r < world; r++ {
					if g := ms[r].Params().Get(name).Grad; g != nil {
						for i, v := range g {
							got[i] += float64(v)
						}
					}
				}
				var num, den float64
				for i := range want {
					num += (got[i] - float64(want[i])) * (got[i] - float64(want[i]))
					den += float64(want[i]) * float64(want[i])
				}
				if rel := math.Sqrt(num) / math.Max(math.Sqrt(den), 1e-12); rel > 1e-4 {
					t.Errorf("world %d layout %d: gradient of %s differs by %.3g relative", world, layout, name, rel)
				}
			}
		}
	}
}

// TestRingStageEquivalence: LWM's sequence-parallel stage (text-512k) at 2
// and 4 ranks, with ring attention, ends with the weights the same stage
// reaches on one rank with ordinary attention.
func TestRingStageEquivalence(t *testing.T) {
	m := testManifest(t, "lwm", 2, 4)
	m.Stages = m.Stages[3:4] // text-512k, run as the job's only stage
	m.Stages[0].Overrides.LR = ptr(3e-3)
	m.Stages[0].Overrides.MicroBatch = ptr(2)
	one := runRanks(t, m, 0, 1, shardMem(), nil, 2, false)
	for _, world := range []int{2, 4} {
		got := runRanks(t, m, 0, world, shardMem(), nil, 2, false)
		d, at := maxRelDiff(one.weights[0], got.weights[0])
		t.Logf("ring over %d ranks vs 1 rank: max relative difference %.3g (%s), losses %v vs %v", world, d, at, got.losses, one.losses)
		if d > 1e-5 {
			t.Errorf("ring over %d ranks vs 1 rank: %s differs by %.3g relative, want ≤ 1e-5", world, at, d)
		}
		for r := 1; r < world; r++ {
			if d, at := maxRelDiff(got.weights[0], got.weights[r]); d != 0 {
				t.Errorf("world %d: rank %d differs from rank 0 (%s: %.3g)", world, r, at, d)
			}
		}
		if len(got.ids) != 2 || len(got.ids[0]) != 4 {
			t.Errorf("world %d: sample log %v, want 4 ids per step from rank 0", world, got.ids)
		}
	}
}

func shardMem() *shard.MemStore { return shard.NewMemStore() }
