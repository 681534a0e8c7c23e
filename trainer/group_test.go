package trainer

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/loomtrain/loom/kernels"
)

// TestGroupGather: the all-gather with gradient against its reference.
// Each rank r holds rows x_r [2, 3] and the loss Σ_r Σ c_r ⊙ gather(x)
// (c_r the rank's own weights on the whole gathered tensor); the gradient
// of x_r is then Σ_s c_s restricted to r's rows, and the gathered tensor
// is every rank's rows in rank order, bit for bit. The group's tokens are
// gathered too.
func TestGroupGather(t *testing.T) {
	const world, n, d = 3, 2, 3
	cs := comms(t, world, 1)
	xs := make([][]float32, world)
	cw := make([][]float32, world)
	rng := rand.New(rand.NewPCG(1, 2))
	for r := range xs {
		for range n * d {
			xs[r] = append(xs[r], float32(rng.NormFloat64()))
		}
		for range world * n * d {
			cw[r] = append(cw[r], float32(rng.NormFloat64()))
		}
	}
	grads := make([][]float32, world)
	gathered := make([][]float32, world)
	groups := make([][][]int32, world)
	groupKeys := make([][]uint64, world)
	var wg sync.WaitGroup
	for r := 0; r < world; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			var wait time.Duration
			gg := &gatherGroup{ctx: context.Background(), comm: cs[r], now: time.Now, wait: &wait, rank: r, world: world}
			toks := [][]int32{{int32(10 * r), 1, 2}, {int32(10*r + 1)}}
			// Rank 1 knows no image keys; the others' cross intact,
			// high bits included.
			var keys []uint64
			if r != 1 {
				keys = []uint64{uint64(r+1)<<40 | 0xabcdef, 1<<48 - 1}
			}
			grp := gg.group(toks, keys, 7)
			groups[r] = grp.Tokens
			groupKeys[r] = grp.ImageKeys
			x := kernels.New(slices.Clone(xs[r]), n, d).SetRequiresGrad(true)
			tp := kernels.NewTape()
			all := grp.Gather(tp, x)
			gathered[r] = slices.Clone(all.Data)
			tp.Backward(tp.Sum(tp.Mul(all, kernels.New(cw[r], world*n, d))))
			grads[r] = x.Grad
		}(r)
	}
	wg.Wait()
	var wantAll []float32
	for r := range xs {
		wantAll = append(wantAll, xs[r]...)
	}
	for r := 0; r < world; r++ {
		if !slices.Equal(gathered[r], wantAll) {
			t.Errorf("rank %d: gather = %v, want %v", r, gathered[r], wantAll)
		}
		for i := range grads[r] {
			var want float64
			for s := 0; s < world; s++ {
				want += float64(cw[s][r*n*d+i])
			}
			if math.Abs(float64(grads[r][i])-want) > 1e-5 {
				t.Errorf("rank %d: x.Grad[%d] = %v, want %v", r, i, grads[r][i], want)
			}
		}
		want := fmt.Sprint([][]int32{{0, 1, 2}, {1}, {10, 1, 2}, {11}, {20, 1, 2}, {21}})
		if got := fmt.Sprint(groups[r]); got != want {
			t.Errorf("rank %d: group tokens %s, want %s", r, got, want)
		}
		wantKeys := []uint64{1<<40 | 0xabcdef, 1<<48 - 1, 0, 0, 3<<40 | 0xabcdef, 1<<48 - 1}
		if !slices.Equal(groupKeys[r], wantKeys) {
			t.Errorf("rank %d: group image keys %x, want %x", r, groupKeys[r], wantKeys)
		}
	}
}
