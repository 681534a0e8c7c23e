package worker

import (
	"bytes"
	"context"
	"testing"

	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/storetest"
)

func TestDiskCacheConformance(t *testing.T) {
	c, err := NewDiskCache(shard.NewMemStore(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, c, storetest.Options{})
}

// countingStore counts GetRange calls per key.
type countingStore struct {
	shard.ObjectStore
	gets map[string]int
}

func (s *countingStore) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	s.gets[key]++
	return s.ObjectStore.GetRange(ctx, key, off, n)
}

// TestDiskCacheMatchesStore reads every range of a shard through the cache
// and straight from the store (the reference) and compares; the store sees
// one GET for the shard however many ranges are read.
func TestDiskCacheMatchesStore(t *testing.T) {
	ctx := context.Background()
	mem := shard.NewMemStore()
	data := make([]byte, 97)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, k := range []string{"d/shard-00000.arrow", "d/index.json"} {
		if err := mem.Put(ctx, k, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	cs := &countingStore{ObjectStore: mem, gets: map[string]int{}}
	c, err := NewDiskCache(cs, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off <= 97; off += 13 {
		for _, n := range []int64{0, 1, 5, -1} {
			if n > 0 && off+n > 97 {
				continue
			}
			for _, k := range []string{"d/shard-00000.arrow", "d/index.json"} {
				got, err := c.GetRange(ctx, k, off, n)
				want, werr := mem.GetRange(ctx, k, off, n)
				if (err != nil) != (werr != nil) || !bytes.Equal(got, want) {
					t.Errorf("GetRange(%s, %d, %d) = %v, %v; store gives %v, %v", k, off, n, got, err, want, werr)
				}
			}
		}
	}
	if _, err := c.GetRange(ctx, "d/shard-00000.arrow", 90, 10); err == nil {
		t.Errorf("GetRange past the end: no error")
	}
	if n := cs.gets["d/shard-00000.arrow"]; n != 1 {
		t.Errorf("store GETs of the shard: %d, want 1 (then served from disk)", n)
	}
	if n := cs.gets["d/index.json"]; n < 2 {
		t.Errorf("store GETs of the index: %d, want every read (not cached)", n)
	}
}
