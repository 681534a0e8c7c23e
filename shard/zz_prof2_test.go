package shard_test

import (
	"context"
	"testing"

	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
)

func TestZZMem(t *testing.T) {
	ctx := context.Background()
	store := shard.NewMemStore()
	var samples []shard.Sample
	for i := 0; i < 1000; i++ {
		samples = append(samples, synth.SampleWith(shard.KindImageText, 1, i, synth.Options{MinSide: 128, MaxSide: 192, Noise: 24}))
	}
	if _, err := shard.BenchIngest(ctx, store, "ds", shard.KindImageText, samples, shard.WriterOptions{ShardBytes: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	res, err := shard.BenchRead(ctx, store, "ds", shard.ReadBenchOptions{Repeat: 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bytes %d raw %v reader %v", res.Bytes, res.RawSeconds[:5], res.ReaderSeconds[:5])
}
