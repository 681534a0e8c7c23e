package trainer

import (
	"context"
	"fmt"
	"testing"

	"github.com/loomtrain/loom/shard"
)

// BenchmarkBLIP2GradCache times one BLIP-2 stage-1 step (small size,
// global batch 16, one worker) without gradient accumulation and with 2
// and 4 micro-batches, which contrast the global batch through GradCache
// (a first pass over every micro-batch without a graph, then forward and
// backward per micro-batch): the cost of contrasting the whole batch under
// a memory limit. The baseline of each accumulated case is the same
// accumulation contrasting within each micro-batch (what Loom did before
// GradCache: cheaper, but not the global batch's loss). Compare the
// sub-benchmarks of one run:
//
//	go test -run '^$' -bench BLIP2GradCache -benchtime 8x ./trainer
func BenchmarkBLIP2GradCache(b *testing.B) {
	d := sharedData(b)
	for _, tc := range []struct {
		micro    int
		perMicro bool // the baseline: contrast within each micro-batch (no GradCache)
	}{{16, false}, {8, false}, {8, true}, {4, false}, {4, true}} {
		name := fmt.Sprintf("micro_batch=%d", tc.micro)
		if tc.perMicro {
			name += "/per-micro-batch-contrast"
		}
		micro := tc.micro
		b.Run(name, func(b *testing.B) {
			m, err := ExampleManifest("blip2", "small", func(k shard.Kind) string { return "s3://test/data/" + string(k) }, int64(b.N+1), 16)
			if err != nil {
				b.Fatal(err)
			}
			m.Stages[0].Overrides.MicroBatch = ptr(micro)
			ctx := context.Background()
			run, err := NewRun(ctx, d.job(m, 0, shard.NewMemStore()), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer run.Close()
			run.noGradCache = tc.perMicro
			if _, err := run.Step(ctx); err != nil { // warm-up: data readers, buffers
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := run.Step(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
