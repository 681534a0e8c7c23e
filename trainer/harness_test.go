package trainer

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/collective/inproc"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
)

// testData is a set of synthetic datasets, one per sample kind, in one
// in-memory store, written once per test binary.
type testData struct {
	store *shard.MemStore
}

var (
	dataOnce sync.Once
	dataSet  *testData
	dataErr  error
)

// samplesPerKind keeps the data small; TestLearns runs over several epochs.
const samplesPerKind = 64

func sharedData(t testing.TB) *testData {
	t.Helper()
	dataOnce.Do(func() {
		ctx := context.Background()
		d := &testData{store: shard.NewMemStore()}
		for _, k := range shard.Kinds {
			if k == shard.KindTokens {
				continue
			}
			// Small shards and batches: every test reads across shards.
			if _, err := synth.Write(ctx, d.store, "data/"+string(k), k, samplesPerKind, 7,
				shard.WriterOptions{Kind: k, ShardBytes: 48 << 10, BatchBytes: 8 << 10, TempDir: t.TempDir()}); err != nil {
				dataErr = fmt.Errorf("synth %s: %w", k, err)
				return
			}
		}
		dataSet = d
	})
	if dataErr != nil {
		t.Fatal(dataErr)
	}
	return dataSet
}

func (d *testData) open(ctx context.Context, ds api.Dataset) (shard.ObjectStore, string, error) {
	return d.store, "data/" + ds.Name, nil
}

// testManifest is ExampleManifest over the shared data at the tiny size.
func testManifest(t testing.TB, recipe string, steps int64, batch int) *api.Manifest {
	t.Helper()
	m, err := ExampleManifest(recipe, "tiny", func(k shard.Kind) string { return "s3://test/data/" + string(k) }, steps, batch)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// job returns a single-process job for stage i.
func (d *testData) job(m *api.Manifest, stage int, ckpt shard.ObjectStore) Job {
	return Job{Manifest: m, Stage: stage, Rank: 0, World: 1, Store: ckpt, CheckpointPrefix: "ckpt/" + m.Name, OpenDataset: d.open}
}

// comms builds an in-process ring of world communicators.
func comms(t testing.TB, world int, gen uint64) []*collective.Comm {
	t.Helper()
	net := inproc.NewNetwork(world, 2)
	out := make([]*collective.Comm, world)
	for r := range out {
		c, err := collective.New(net.Transport(r), collective.Config{Job: "test", Generation: gen})
		if err != nil {
			t.Fatal(err)
		}
		out[r] = c
	}
	t.Cleanup(func() {
		for _, c := range out {
			c.Close()
		}
	})
	return out
}

// reportGrads makes weights return the trainable gradients of the last
// step (after the all-reduce and clipping; nil as zeros) instead.
var reportGrads bool

// weights copies every parameter of a run.
func weights(r *Run) map[string][]float32 {
	if reportGrads {
		out := map[string][]float32{}
		for _, p := range r.params {
			g := p.Grad
			if g == nil {
				g = make([]float32, len(p.Data))
			}
			out[p.Name] = append([]float32(nil), g...)
		}
		return out
	}
	out := map[string][]float32{}
	for _, name := range r.model.Params().Names() {
		out[name] = append([]float32(nil), r.model.Params().Get(name).Data...)
	}
	return out
}
