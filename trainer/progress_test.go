package trainer

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/loomtrain/loom/shard"
)

// Step's times add up: getting the samples (DataWait) and waiting on
// collectives (CommWait) are parts of the step's wall time. The clock
// advances 1ms per reading, so every interval is measured, never zero.
func TestProgressSplitsStepTime(t *testing.T) {
	d := sharedData(t)
	for _, recipe := range []string{"vila", "lwm"} {
		m := testManifest(t, recipe, 2, 4)
		var mu sync.Mutex
		now := time.Unix(0, 0)
		j := d.job(m, 0, shard.NewMemStore())
		j.Now = func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			now = now.Add(time.Millisecond)
			return now
		}
		r, err := NewRun(context.Background(), j, nil)
		if err != nil {
			t.Fatalf("%s: %v", recipe, err)
		}
		p, err := r.Step(context.Background())
		r.Close()
		if err != nil {
			t.Fatalf("%s: %v", recipe, err)
		}
		if p.DataWait <= 0 || p.DataWait+p.CommWait >= p.StepTime {
			t.Errorf("%s: data wait %s + comm wait %s, step time %s: want a positive data wait and both within the step", recipe, p.DataWait, p.CommWait, p.StepTime)
		}
	}
}
