package trainer

import (
	"io"
	"strings"
	"testing"
)

// TestBenchShard: loom bench train --shard measures the sharded run beside
// the plain one, and rank 0's optimizer state at 2 ranks is half of it.
func TestBenchShard(t *testing.T) {
	res, err := Bench(t.Context(), BenchOptions{Recipe: "lwm", Size: "tiny", Worlds: []int{1, 2}, Steps: 1, PerRank: 2, Shard: "gradients", Dir: t.TempDir()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	w := res.Worlds[1]
	if w.World != 2 || w.StepSecondsSharded <= 0 || w.ShardedThroughput <= 0 {
		t.Errorf("world 2: %+v: no sharded measurement", w)
	}
	if r := w.ShardedOptimizerRatio; r < 0.49 || r > 0.51 {
		t.Errorf("optimizer state at 2 ranks sharded / plain = %.4f, want 0.5", r)
	}
	var b strings.Builder
	WriteBenchTable(&b, res)
	if !strings.Contains(b.String(), "parallelism.shard gradients") {
		t.Errorf("table lacks the sharded section:\n%s", b.String())
	}
	if _, err := Bench(t.Context(), BenchOptions{Shard: "params"}, io.Discard); err == nil || !strings.Contains(err.Error(), `"params"`) {
		t.Errorf("shard params: %v", err)
	}
}
