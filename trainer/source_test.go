package trainer

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/shard"
)

// rangeLog is an ObjectStore that records the byte ranges read through it.
type rangeLog struct {
	shard.ObjectStore
	mu     sync.Mutex
	ranges []readRange
}

type readRange struct {
	key         string
	offset, end int64
}

func (s *rangeLog) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	s.mu.Lock()
	s.ranges = append(s.ranges, readRange{key, offset, offset + length})
	s.mu.Unlock()
	return s.ObjectStore.GetRange(ctx, key, offset, length)
}

// covered reports whether some recorded read covers [offset, end) of key.
func (s *rangeLog) covered(key string, offset, end int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.ranges {
		if r.key == key && r.offset <= offset && end <= r.end {
			return true
		}
	}
	return false
}

// TestNextBatchPrefetched checks that reading one step's rows queues the
// record batches of the next step's rows: a batch only the next step needs
// is fetched before that step asks for it.
func TestNextBatchPrefetched(t *testing.T) {
	d := sharedData(t)
	m := testManifest(t, "vila", 4, 8)
	log := &rangeLog{ObjectStore: d.store}
	j := d.job(m, 0, shard.NewMemStore())
	j.OpenDataset = func(ctx context.Context, ds api.Dataset) (shard.ObjectStore, string, error) {
		return log, "data/" + ds.Name, nil
	}
	ctx := context.Background()
	r, err := NewRun(ctx, j, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	batch := r.stage.GlobalBatch
	type span struct {
		key         string
		offset, end int64
	}
	// spans returns the record batches holding the rows of the global
	// batch at pos.
	spans := func(pos int64) map[span]bool {
		out := map[span]bool{}
		for _, l := range r.data.sampler.RankBatch(pos, 0, 1) {
			rd := r.data.readers[l.Source]
			si := rd.Index().Shards[l.Shard]
			row := l.Row
			for _, b := range si.Batches {
				if row < b.Rows {
					out[span{"data/" + r.data.names[l.Source] + "/" + si.Key, b.Offset, b.Offset + b.Length}] = true
					break
				}
				row -= b.Rows
			}
		}
		return out
	}
	// Find a step whose rows need a batch the step before does not.
	var pos int64
	var want span
	for k := int64(1); k < 64 && want.key == ""; k++ {
		prev, next := spans((k-1)*int64(batch)), spans(k*int64(batch))
		for s := range next {
			if !prev[s] && !log.covered(s.key, s.offset, s.end) {
				pos, want = (k-1)*int64(batch), s
				break
			}
		}
	}
	if want.key == "" {
		t.Fatal("no step needs a record batch its predecessor does not: make the test data's batches smaller")
	}
	if _, err := r.data.rankRows(ctx, r.builder, pos, 0, 1, batch); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !log.covered(want.key, want.offset, want.end) {
		if time.Now().After(deadline) {
			t.Fatalf("after reading the rows at position %d, the batch %s [%d, %d) that only position %d needs was not fetched within 10s: no prefetch",
				pos, want.key, want.offset, want.end, pos+int64(batch))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
