package worker

import (
	"bytes"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/loomtrain/loom/shard"
)

// TestNoGoroutineLeak runs two ranks over real gRPC through a stage and a
// replaced generation, stops both agents, and checks that every goroutine
// they started (watch, registration, reporters, transports) is gone.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		coord := newFakeCoordinator()
		store := shard.NewMemStore()
		w0 := startWorker(t, "w0", coord, store, 30*time.Millisecond)
		w1 := startWorker(t, "w1", coord, store, 30*time.Millisecond)
		ws := []*testWorker{w0, w1}
		coord.assign("w0", assignment(1, 0, 0, ws, nil, 0, 6))
		coord.assign("w1", assignment(1, 0, 1, ws, nil, 0, 6))
		if !coord.waitFor(10*time.Second, func(f *fakeCoordinator) bool { return len(f.commits) >= 1 }) {
			t.Fatal("no checkpoint")
		}
		// Replace mid-stage, then stop.
		coord.assign("w0", assignment(2, 0, 0, ws, nil, 0, 6))
		coord.assign("w1", assignment(2, 0, 1, ws, nil, 0, 6))
		if !coord.waitFor(10*time.Second, func(f *fakeCoordinator) bool {
			for _, c := range f.commits {
				if c.Generation == 2 && c.Step == 6 {
					return true
				}
			}
			return false
		}) {
			t.Fatal("generation 2 did not finish the stage")
		}
		for _, w := range ws {
			if err := w.stop(t); err != nil {
				t.Fatalf("stop %s: %v", w.id, err)
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > before {
		var b bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Errorf("%d goroutines after the agents stopped, %d before:\n%s", got, before, b.String())
	}
}
