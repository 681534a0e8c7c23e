package trainer

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/loomtrain/loom/kernels"
)

// TestGradReduceAgainstSum: the overlapped, bucketed gradient all-reduce
// (parameters reported ready in a random order, some never, some with no
// gradient on some ranks, one with none on any rank) gives every rank the
// plain float64 sum of the ranks' gradients, bit-identical across ranks,
// exactly the float32 sum at 2 ranks, and nil where no rank had one. The
// bucket size (7 floats) cuts parameters across buckets.
func TestGradReduceAgainstSum(t *testing.T) {
	sizes := []int{5, 12, 3, 9, 1, 16}
	for _, world := range []int{2, 3} {
		t.Run(fmt.Sprint("world", world), func(t *testing.T) {
			cs := comms(t, world, 1)
			params := make([][]*kernels.Tensor, world)
			for r := range params {
				rng := rand.New(rand.NewPCG(uint64(r), 5))
				for i, n := range sizes {
					p := kernels.NewParam(fmt.Sprint("p", i), n)
					if i != 2 && !(i == 4 && r == 0) { // p2: no rank; p4: not rank 0
						p.Grad = make([]float32, n)
						for k := range p.Grad {
							p.Grad[k] = float32(rng.NormFloat64())
						}
					}
					params[r] = append(params[r], p)
				}
			}
			// Reference.
			want := make([][]float64, len(sizes))
			for i, n := range sizes {
				for r := range params {
					if g := params[r][i].Grad; g != nil {
						if want[i] == nil {
							want[i] = make([]float64, n)
						}
						for k, v := range g {
							want[i][k] += float64(v)
						}
					}
				}
			}
			sum32 := make([][]float32, len(sizes)) // world 2: one float32 addition
			for i, n := range sizes {
				sum32[i] = make([]float32, n)
				for r := range params {
					for k, v := range params[r][i].Grad {
						sum32[i][k] += v
					}
				}
			}
			wantLoss := 0.0
			losses := make([]float64, world)
			var wg sync.WaitGroup
			errs := make([]error, world)
			for r := 0; r < world; r++ {
				losses[r] = float64(r) + 0.5
				wantLoss += losses[r]
				wg.Add(1)
				go func(r int) {
					defer wg.Done()
					g := newGradReduce(cs[r], params[r], 7)
					g.begin(context.Background())
					rng := rand.New(rand.NewPCG(uint64(r), 9))
					for _, i := range rng.Perm(len(sizes))[:4] {
						g.ready(params[r][i])
						g.ready(params[r][i]) // a second report is ignored
					}
					g.ready(kernels.NewParam("stranger", 3)) // not a parameter of the run: ignored
					errs[r] = g.finish(context.Background(), &losses[r])
				}(r)
			}
			wg.Wait()
			for r, err := range errs {
				if err != nil {
					t.Fatalf("rank %d: finish: %v", r, err)
				}
			}
			for r := range params {
				if math.Abs(losses[r]-wantLoss) > 1e-6 {
					t.Errorf("rank %d: loss %v, want %v", r, losses[r], wantLoss)
				}
				for i := range sizes {
					got := params[r][i].Grad
					if (got == nil) != (want[i] == nil) {
						t.Errorf("rank %d: p%d.Grad = %v, want presence %v", r, i, got, want[i] != nil)
						continue
					}
					for k := range got {
						if math.Abs(float64(got[k])-want[i][k]) > 1e-5 {
							t.Errorf("rank %d: p%d.Grad[%d] = %v, want %v", r, i, k, got[k], want[i][k])
						}
						if world == 2 && got[k] != sum32[i][k] {
							t.Errorf("rank %d: p%d.Grad[%d] = %v, want the float32 sum %v", r, i, k, got[k], sum32[i][k])
						}
						if got[k] != params[0][i].Grad[k] {
							t.Errorf("rank %d: p%d.Grad[%d] = %v, rank 0 has %v: ranks must agree bit for bit", r, i, k, got[k], params[0][i].Grad[k])
						}
					}
				}
			}
		})
	}
}

// TestGradReduceReleasesEarly: a bucket is handed to the Bucketer as soon
// as every parameter it holds is final, before finish; the tail bucket
// (flags and loss) is not.
func TestGradReduceReleasesEarly(t *testing.T) {
	cs := comms(t, 2, 1)
	var wg sync.WaitGroup
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			ps := []*kernels.Tensor{kernels.NewParam("a", 4), kernels.NewParam("b", 4), kernels.NewParam("c", 4)}
			for _, p := range ps {
				p.Grad = []float32{1, 2, 3, 4}
			}
			g := newGradReduce(cs[r], ps, 4) // flat: c | b | a | 3 flags + loss
			g.holdBuckets()                  // as a BLIP-2 all-gather does in forward
			g.begin(context.Background())
			g.ready(ps[2]) // c is bucket 0
			if g.pending[0] != 0 || g.pending[1] != 1 || !slices.Equal(g.queued, []int{0}) {
				t.Errorf("rank %d: after ready(c) under a hold: pending = %v, queued %v; want bucket 0 complete and queued", r, g.pending, g.queued)
			}
			g.releaseBuckets()
			if len(g.queued) != 0 {
				t.Errorf("rank %d: releaseBuckets left %v queued", r, g.queued)
			}
			g.ready(ps[1])
			g.ready(ps[0])
			if g.pending[3] != 1 {
				t.Errorf("rank %d: the tail bucket is pending %d before finish, want 1", r, g.pending[3])
			}
			loss := 1.0
			if err := g.finish(context.Background(), &loss); err != nil {
				t.Errorf("rank %d: %v", r, err)
			}
			if ps[0].Grad[3] != 8 || loss != 2 {
				t.Errorf("rank %d: a.Grad = %v, loss %v; want [2 4 6 8], 2", r, ps[0].Grad, loss)
			}
		}(r)
	}
	wg.Wait()
}

// TestGradReduceAbort: a step that fails after some buckets left cancels
// the reductions in flight and leaves no goroutine behind (Wait returns).
func TestGradReduceAbort(t *testing.T) {
	cs := comms(t, 2, 1)
	ps := []*kernels.Tensor{kernels.NewParam("a", 4), kernels.NewParam("b", 4)}
	for _, p := range ps {
		p.Grad = make([]float32, 4)
	}
	g := newGradReduce(cs[0], ps, 4)
	g.begin(context.Background())
	g.ready(ps[1]) // bucket 0 starts: it waits for rank 1, which never comes
	g.abort()
	if g.started {
		t.Fatalf("abort left the step started")
	}
}
