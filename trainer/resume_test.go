package trainer

import (
	"fmt"
	"slices"
	"testing"

	"github.com/loomtrain/loom/shard"
)

// auditIDs checks that the resumed run read exactly the uninterrupted
// run's samples: none twice, none skipped, in the same order.
func auditIDs(t *testing.T, want, first, second [][]string) {
	t.Helper()
	got := append(append([][]string{}, first...), second...)
	seen := map[string]int{}
	for s, step := range got {
		for _, id := range step {
			if prev, ok := seen[id]; ok {
				t.Errorf("sample %s read twice (steps %d and %d)", id, prev+1, s+1)
			}
			seen[id] = s
		}
	}
	for s, step := range want {
		for _, id := range step {
			if _, ok := seen[id]; !ok {
				t.Errorf("sample %s (step %d of the uninterrupted run) skipped", id, s+1)
			}
		}
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("resumed run read %v, uninterrupted %v", got, want)
	}
}

// TestResumeBitExact: k steps, checkpoint, a new run from the checkpoint,
// k more steps → the weights of 2k uninterrupted steps, bit for bit, at
// the same world size; the sample log has no sample twice, none skipped.
func TestResumeBitExact(t *testing.T) {
	for _, tc := range []struct {
		recipe string
		world  int
	}{{"lwm", 1}, {"lwm", 2}, {"vila", 2}} {
		t.Run(fmt.Sprintf("%s/world%d", tc.recipe, tc.world), func(t *testing.T) {
			m := testManifest(t, tc.recipe, 4, 8)
			m.Stages[0].Overrides.MicroBatch = ptr(2)
			m.Stages[0].Overrides.WarmupSteps = ptr(int64(1))
			whole := runRanks(t, m, 0, tc.world, shard.NewMemStore(), nil, 4, false)
			store := shard.NewMemStore()
			first := runRanks(t, m, 0, tc.world, store, nil, 2, true)
			if first.ref == nil || first.ref.Step != 2 || first.ref.Samples != 16 {
				t.Fatalf("checkpoint after 2 steps: %+v", first.ref)
			}
			second := runRanks(t, m, 0, tc.world, store, first.ref, 2, false)
			for name, w := range whole.weights[0] {
				if !slices.Equal(w, second.weights[0][name]) {
					d, _ := maxRelDiff(map[string][]float32{name: w}, map[string][]float32{name: second.weights[0][name]})
					t.Errorf("%s differs after resume (relative %.3g), want bit-identical", name, d)
				}
			}
			auditIDs(t, whole.ids, first.ids, second.ids)
		})
	}
}

// TestResumeWorldChange: 2 steps on 4 ranks, checkpoint, 2 steps on 3
// ranks from it → the weights of 4 steps on 1 rank (global batch 12),
// within 1e-5 relative, and the same samples.
func TestResumeWorldChange(t *testing.T) {
	m := testManifest(t, "lwm", 4, 12)
	m.Stages[0].Overrides.MicroBatch = ptr(2)
	m.Stages[0].Overrides.LR = ptr(3e-3)
	whole := runRanks(t, m, 0, 1, shard.NewMemStore(), nil, 4, false)
	store := shard.NewMemStore()
	first := runRanks(t, m, 0, 4, store, nil, 2, true)
	second := runRanks(t, m, 0, 3, store, first.ref, 2, false)
	d, at := maxRelDiff(whole.weights[0], second.weights[0])
	t.Logf("4→3 ranks vs 1 rank: max relative difference %.3g (%s)", d, at)
	if d > 1e-5 {
		t.Errorf("4→3 ranks vs 1 rank: %s differs by %.3g relative, want ≤ 1e-5", at, d)
	}
	auditIDs(t, whole.ids, first.ids, second.ids)
}
