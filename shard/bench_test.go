package shard_test

import (
	"context"
	"testing"

	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
)

// TestBenchHarness checks that the benchmark harness runs and counts what
// it should (no speed assertions).
func TestBenchHarness(t *testing.T) {
	ctx := context.Background()
	store := shard.NewMemStore()
	var samples []shard.Sample
	for i := 0; i < 200; i++ {
		samples = append(samples, synth.Sample(shard.KindImageText, 2, i))
	}
	ing, err := shard.BenchIngest(ctx, store, "b", shard.KindImageText, samples, shard.WriterOptions{BatchBytes: 8 << 10, ShardBytes: 32 << 10})
	if err != nil || ing.Rows != 200 || ing.Bytes <= 0 {
		t.Fatalf("BenchIngest = %+v, %v", ing, err)
	}
	res, err := shard.BenchRead(ctx, store, "b", shard.ReadBenchOptions{Repeat: 2})
	if err != nil || res.Rows != 200 || len(res.RawSeconds) != 2 || len(res.ReaderSeconds) != 2 || res.Ratio <= 0 || res.MedianRatio <= 0 {
		t.Fatalf("BenchRead = %+v, %v", res, err)
	}
	ix, _ := shard.ReadIndex(ctx, store, "b")
	batches := int64(0)
	for _, s := range ix.Shards {
		batches += int64(len(s.Batches))
	}
	if res.ReaderGets > batches || res.ReaderGets < int64(len(ix.Shards)) {
		t.Errorf("a reader pass made %d GETs, want at most one per batch (%d), at least one per shard (%d)", res.ReaderGets, batches, len(ix.Shards))
	}
}
