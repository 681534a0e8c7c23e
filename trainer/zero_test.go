package trainer

import (
	"fmt"
	"math"
	"testing"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/shard"
)

// TestZeroEquivalence: ZeRO stages 1 and 2 (parallelism.shard optimizer,
// gradients) on 2 and 4 ranks against plain data parallelism on as many
// ranks, after k steps, per tensor. Stage 1 keeps the all-reduce and
// clipping, and AdamW is element-wise, so it must be bit-identical; stage
// 2's clipping norm sums the ranks' partial norms, so it may differ in
// float32 noise. Clipping is on (grad_clip 0.05 binds at lr 3e-3), so the
// sharded norm is exercised, and the micro-batches accumulate.
func TestZeroEquivalence(t *testing.T) {
	const steps, lr = 3, 3e-3
	for _, tc := range []struct {
		name, recipe string
		micro        int  // 0: none
		ring         bool // LWM's sequence-parallel stage text-512k
	}{
		{name: "qwen-vl", recipe: "qwen-vl", micro: 2},
		{name: "blip2", recipe: "blip2"},
		{name: "blip2 gradcache", recipe: "blip2", micro: 2}, // GradCache's first pass over the micro-batches
		{name: "lwm", recipe: "lwm", micro: 2},
		{name: "lwm ring attention", recipe: "lwm", micro: 2, ring: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testManifest(t, tc.recipe, steps, 8)
			if tc.ring {
				m.Stages = m.Stages[3:4]
			}
			m.Stages[0].Overrides.LR = ptr(lr)
			m.Stages[0].Overrides.GradClip = ptr(0.05)
			if tc.micro > 0 {
				m.Stages[0].Overrides.MicroBatch = ptr(tc.micro)
			}
			init := runRanks(t, m, 0, 1, shard.NewMemStore(), nil, 0, false)
			for _, world := range []int{2, 4} {
				plain := runRanks(t, m, 0, world, shard.NewMemStore(), nil, steps, false)
				if !moved(init.weights[0], plain.weights[0]) {
					t.Fatalf("%d steps did not change the weights", steps)
				}
				clipped := false
				for _, n := range plain.norms {
					clipped = clipped || n > 0.05
				}
				if !clipped {
					t.Errorf("world %d: gradient norms %v never reach grad_clip 0.05: clipping is not exercised", world, plain.norms)
				}
				for _, level := range []string{"optimizer", "gradients"} {
					z := *m
					z.Parallelism = api.Parallelism{Shard: level}
					got := runRanks(t, &z, 0, world, shard.NewMemStore(), nil, steps, false)
					for r := 1; r < world; r++ {
						if d, at := maxRelDiff(got.weights[0], got.weights[r]); d != 0 {
							t.Errorf("%s, world %d: rank %d differs from rank 0 (%s: %.3g): ranks must stay bit-identical", level, world, r, at, d)
						}
					}
					d, at := maxRelDiff(plain.weights[0], got.weights[0])
					t.Logf("%s, world %d vs plain data parallelism: weights differ by up to %.3g relative (%s); norms %v vs %v",
						level, world, d, at, got.norms, plain.norms)
					bound := 2e-5 // as TestDataParallelEquivalence's
					if level == "optimizer" {
						bound = 0
					}
					if d > bound {
						t.Errorf("%s, world %d: %s differs from plain data parallelism by %.3g relative, want ≤ %g", level, world, at, d, bound)
					}
					for s := range got.norms {
						if math.Abs(got.norms[s]-plain.norms[s]) > 1e-5*plain.norms[s] || math.Abs(got.losses[s]-plain.losses[s]) > 1e-5*math.Abs(plain.losses[s]) {
							t.Errorf("%s, world %d step %d: loss %v norm %v, plain %v %v", level, world, s, got.losses[s], got.norms[s], plain.losses[s], plain.norms[s])
						}
					}
				}
			}
		})
	}
}

// TestZeroResumeWorldChange: ZeRO stage 2 on 4 ranks, checkpoint (the
// moments gathered whole), then stage 1 on 3 ranks from it ends where 4
// plain steps on 1 rank do, on the same samples: the checkpoint reshards.
func TestZeroResumeWorldChange(t *testing.T) {
	m := testManifest(t, "lwm", 4, 12)
	m.Stages[0].Overrides.MicroBatch = ptr(2)
	m.Stages[0].Overrides.LR = ptr(3e-3)
	whole := runRanks(t, m, 0, 1, shard.NewMemStore(), nil, 4, false)
	store := shard.NewMemStore()
	z2, z1 := *m, *m
	z2.Parallelism.Shard, z1.Parallelism.Shard = "gradients", "optimizer"
	first := runRanks(t, &z2, 0, 4, store, nil, 2, true)
	second := runRanks(t, &z1, 0, 3, store, first.ref, 2, false)
	d, at := maxRelDiff(whole.weights[0], second.weights[0])
	t.Logf("ZeRO-2 on 4 → ZeRO-1 on 3 ranks vs 1 rank: max relative difference %.3g (%s)", d, at)
	if d > 1e-5 {
		t.Errorf("4→3 ranks vs 1 rank: %s differs by %.3g relative, want ≤ 1e-5", at, d)
	}
	auditIDs(t, whole.ids, first.ids, second.ids)
	// And a plain run resumes from a sharded checkpoint the same way.
	third := runRanks(t, m, 0, 2, store, first.ref, 2, false)
	if d, at := maxRelDiff(second.weights[0], third.weights[0]); d > 1e-5 {
		t.Errorf("plain 2 ranks vs ZeRO-1 3 ranks from one sharded checkpoint: %s differs by %.3g", at, d)
	}
}

// TestZeroShards: each rank holds AdamW's moments for its 1/world of the
// trainable elements (within one element per bucket, and the flags' places), the ranks' pieces
// cover every element exactly once, and stage 2 reduce-scatters every
// bucket before the one with the presence flags.
func TestZeroShards(t *testing.T) {
	m := testManifest(t, "qwen-vl", 1, 8)
	for _, world := range []int{2, 3, 4} {
		for level := 1; level <= 2; level++ {
			t.Run(fmt.Sprintf("world %d level %d", world, level), func(t *testing.T) {
				run, err := NewRun(t.Context(), sharedData(t).job(m, 0, shard.NewMemStore()), nil)
				if err != nil {
					t.Fatal(err)
				}
				defer run.Close()
				params := run.params
				// Small buckets, so that ranges cross parameters and
				// several buckets are scattered.
				total := 0
				for _, p := range params {
					total += len(p.Data)
				}
				bucket := total/7 + 3
				seen := make([][]int, len(params))
				for i, p := range params {
					seen[i] = make([]int, len(p.Data))
				}
				for rank := range world {
					c := fakeComm(t, rank, world)
					g := newGradReduce(c, params, bucket)
					z := newZero(level, c, g, params)
					// Chunks differ by one element per bucket, and the
					// presence flags and the loss take places in the last.
					slack := len(g.bounds) + len(g.flat) - g.tail
					if n, want := z.owned(), total/world; n < want-slack || n > want+slack {
						t.Errorf("rank %d owns %d of %d elements, want about %d", rank, n, total, want)
					}
					for _, pc := range z.pieces {
						for k := pc.lo; k < pc.hi; k++ {
							seen[pc.param][k]++
						}
						if got, want := pc.flat, g.offs[pc.param]+pc.lo; got != want {
							t.Errorf("piece %+v at flat %d, want %d", pc, got, want)
						}
					}
					if got := len(z.views); got != len(z.pieces) {
						t.Errorf("%d views of %d pieces", got, len(z.pieces))
					}
					if level == 2 != g.scattered {
						t.Errorf("level %d: gradReduce scattered = %v", level, g.scattered)
					}
				}
				for i, s := range seen {
					for k, n := range s {
						if n != 1 {
							t.Fatalf("%s[%d] is held by %d ranks, want 1", params[i].Name, k, n)
						}
					}
				}
			})
		}
	}
}

// fakeComm is a communicator of the given rank and world that is never
// used for a collective (newZero only asks it for its rank and world).
func fakeComm(t *testing.T, rank, world int) *collective.Comm {
	cs := comms(t, world, 1)
	return cs[rank]
}

// TestRecomputeStage: a stage with recompute: true (activation
// checkpointing per decoder block) trains to the same weights bit for bit,
// on one rank and across two.
func TestRecomputeStage(t *testing.T) {
	m := testManifest(t, "lwm", 2, 4)
	m.Stages = m.Stages[:1]
	m.Stages[0].Overrides.LR = ptr(3e-3)
	for _, world := range []int{1, 2} {
		plain := runRanks(t, m, 0, world, shard.NewMemStore(), nil, 2, false)
		rc := *m
		rc.Stages = []api.Stage{m.Stages[0]}
		rc.Stages[0].Overrides.Recompute = ptr(true)
		got := runRanks(t, &rc, 0, world, shard.NewMemStore(), nil, 2, false)
		if d, at := maxRelDiff(plain.weights[0], got.weights[0]); d != 0 {
			t.Errorf("world %d: with recompute %s differs by %.3g relative", world, at, d)
		}
	}
	run, err := NewRun(t.Context(), sharedData(t).job(func() *api.Manifest {
		rc := *m
		rc.Stages = []api.Stage{m.Stages[0]}
		rc.Stages[0].Overrides.Recompute = ptr(true)
		return &rc
	}(), 0, shard.NewMemStore()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	if !run.cfg.LLM.Recompute {
		t.Error("recompute: true did not reach the model config")
	}
}
