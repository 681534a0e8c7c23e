package worker

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

// ended counts the worker's generations that ended, however.
func ended(w *testWorker) float64 {
	var n float64
	for _, e := range []string{"stopped", "failed", "stale", "finished", "drained"} {
		n += w.agent.metrics.generationsEnded(e)
	}
	return n
}

// deafTrainerFunc is fakeTrainerFunc whose steps take delay and ignore
// their context (like a single rank of the real trainer); live tracks the
// newest trainer's step.
func deafTrainerFunc(delay time.Duration, live *atomic.Int64) func(made chan<- *fakeTrainer) NewTrainerFunc {
	return func(made chan<- *fakeTrainer) NewTrainerFunc {
		inner := fakeTrainerFunc(delay, nil)
		return func(ctx context.Context, j trainer.Job, restore *trainer.CheckpointRef) (Trainer, error) {
			tr, err := inner(ctx, j, restore)
			if err != nil {
				return nil, err
			}
			ft := tr.(*fakeTrainer)
			ft.deaf, ft.live = true, live
			made <- ft
			return ft, nil
		}
	}
}

const longManifest = `name: j1
recipe: blip2
model: {size: tiny}
datasets: [{name: d, uri: s3://data/d}]
global_batch: 4
elastic: {min: 1, max: 4}
checkpoint: {interval: 2, keep: 2}
stages:
  - {name: representation, steps: 1000}
  - {name: generative, steps: 4}
`

func longAssignment(gen int64, rank int32, ws []*testWorker) *loompb.Assignment {
	a := assignment(gen, 0, rank, ws, nil, 0, 1000)
	a.ManifestYaml = []byte(longManifest)
	return a
}

// Cancelling a job (the assignment goes idle) or replacing its generation
// stops every rank within one step, whatever the world size. Issue 16: a
// cancelled one-worker job kept training to its last step, because only a
// collective noticed the generation's context.
func TestStopWithinOneStep(t *testing.T) {
	const delay = 30 * time.Millisecond
	for _, n := range []int{1, 2, 4} {
		for _, how := range []string{"cancel", "replace"} {
			t.Run(fmt.Sprintf("%s/world-%d", how, n), func(t *testing.T) {
				coord := newFakeCoordinator()
				store := shard.NewMemStore()
				lives := make([]*atomic.Int64, n)
				var ws []*testWorker
				for i := range n {
					lives[i] = &atomic.Int64{}
					ws = append(ws, startWorkerWith(t, fmt.Sprintf("w%d", i), coord, store, deafTrainerFunc(delay, lives[i])))
				}
				for i, w := range ws {
					coord.assign(w.id, longAssignment(1, int32(i), ws))
				}
				if !coord.waitFor(20*time.Second, func(f *fakeCoordinator) bool { return len(f.reports) >= 3*n }) {
					t.Fatal("generation 1 did not start")
				}
				at := make([]int64, n)
				for i, w := range ws {
					at[i] = lives[i].Load()
					if how == "cancel" {
						coord.assign(w.id, &loompb.Assignment{Idle: true})
					} else {
						coord.assign(w.id, longAssignment(2, int32(i), ws))
					}
				}
				for i, w := range ws {
					deadline := time.Now().Add(10 * time.Second)
					// "stopped" on the rank told first; the others may see
					// their ring aborted first and end "failed": either way
					// the generation is over.
					for ended(w) == 0 {
						if time.Now().After(deadline) {
							t.Fatalf("%s: generation 1 did not stop (trainer at step %d, was %d)", w.id, lives[i].Load(), at[i])
						}
						time.Sleep(5 * time.Millisecond)
					}
				}
				if how == "replace" {
					return // generation 2 runs on; the stop of generation 1 is what counts
				}
				time.Sleep(5 * delay)
				for i, w := range ws {
					if got := lives[i].Load(); got > at[i]+1 {
						t.Errorf("%s: trained to step %d after being stopped at step %d; want at most one more step", w.id, got, at[i])
					}
				}
			})
		}
	}
}
