package shard_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
)

func writeSynth(t testing.TB, store shard.ObjectStore, prefix string, kind shard.Kind, n int, opts shard.WriterOptions) *shard.Index {
	t.Helper()
	ix, err := synth.Write(context.Background(), store, prefix, kind, n, 1, opts)
	if err != nil {
		t.Fatalf("synth.Write(%s, %d): %v", kind, n, err)
	}
	return ix
}

func TestRoundTripEveryKind(t *testing.T) {
	ctx := context.Background()
	for _, kind := range shard.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			store := shard.NewMemStore()
			var want []shard.Sample
			w, err := shard.NewWriter(ctx, store, "ds", shard.WriterOptions{Kind: kind, BatchBytes: 1 << 10, ShardBytes: 3 << 10})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 30; i++ {
				want = append(want, synth.Sample(kind, 1, i))
				if err := w.Add(want[i]); err != nil {
					t.Fatal(err)
				}
			}
			ix, err := w.Close()
			if err != nil {
				t.Fatal(err)
			}
			if ix.Rows != 30 || len(ix.Shards) < 2 {
				t.Fatalf("index: %d rows in %d shards, want 30 rows in >= 2 shards", ix.Rows, len(ix.Shards))
			}
			r, err := shard.OpenReader(ctx, store, "ds", shard.ReaderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			i := 0
			for s := range ix.Shards {
				for row := int64(0); row < ix.Shards[s].Rows; row++ {
					got, err := r.Get(ctx, s, row)
					if err != nil {
						t.Fatalf("Get(%d, %d): %v", s, row, err)
					}
					if !reflect.DeepEqual(normalize(got), normalize(want[i])) {
						t.Fatalf("Get(%d, %d) = %+v\nwant %+v", s, row, got, want[i])
					}
					i++
				}
			}
		})
	}
}

// normalize maps nil and empty slices to the same value for comparison.
func normalize(s shard.Sample) shard.Sample {
	if len(s.Timestamps) == 0 {
		s.Timestamps = nil
	}
	if len(s.Items) == 0 {
		s.Items = nil
	}
	if len(s.Images) == 0 {
		s.Images = nil
	}
	if len(s.Frames) == 0 {
		s.Frames = nil
	}
	return s
}

// asV1 returns ix as an index of format version 1 (no schema field), as
// written before version 2: readers check each shard's footer instead.
func asV1(ix *shard.Index) *shard.Index {
	v1 := *ix
	v1.Version, v1.Schema = 1, nil
	return &v1
}

func TestOneRangeGetPerBatch(t *testing.T) {
	ctx := context.Background()
	store := shard.NewMemStore()
	ix := writeSynth(t, store, "ds", shard.KindImageText, 200, shard.WriterOptions{BatchBytes: 16 << 10, ShardBytes: 100 << 10})
	batches := 0
	for _, s := range ix.Shards {
		batches += len(s.Batches)
	}
	for _, c := range []struct {
		name string
		ix   *shard.Index
		want int
	}{
		{"index v2 (schema in the index)", ix, batches},
		{"index v1 (one footer per shard)", asV1(ix), batches + len(ix.Shards)},
	} {
		r := shard.NewReader(store, "ds", c.ix, shard.ReaderOptions{})
		before := store.Gets()
		for s := range ix.Shards {
			for row := int64(0); row < ix.Shards[s].Rows; row++ {
				if _, err := r.Get(ctx, s, row); err != nil {
					t.Fatal(err)
				}
			}
		}
		if got := store.Gets() - before; got != c.want {
			t.Errorf("%s: reading %d rows in %d batches of %d shards with Get made %d range GETs, want %d", c.name, ix.Rows, batches, len(ix.Shards), got, c.want)
		}
	}
}

func TestCacheIsBounded(t *testing.T) {
	ctx := context.Background()
	store := shard.NewMemStore()
	ix := writeSynth(t, store, "ds", shard.KindImageText, 200, shard.WriterOptions{BatchBytes: 16 << 10})
	largest := int64(0)
	for _, b := range ix.Shards[0].Batches {
		largest = max(largest, b.Length)
	}
	// Room for about two batches: reading everything twice refetches.
	r := shard.NewReader(store, "ds", ix, shard.ReaderOptions{CacheBytes: 2*largest + 1})
	for pass := 0; pass < 2; pass++ {
		for row := int64(0); row < ix.Shards[0].Rows; row++ {
			if _, err := r.Get(ctx, 0, row); err != nil {
				t.Fatal(err)
			}
		}
	}
	gets, _ := r.Stats()
	n := int64(len(ix.Shards[0].Batches))
	if gets != 2*n {
		t.Errorf("two passes over %d batches with a 2-batch cache made %d GETs, want %d", n, gets, 2*n)
	}
	// With a cache that holds everything, the second pass is free.
	r = shard.NewReader(store, "ds", ix, shard.ReaderOptions{CacheBytes: 1 << 30})
	for pass := 0; pass < 2; pass++ {
		for row := int64(0); row < ix.Shards[0].Rows; row++ {
			if _, err := r.Get(ctx, 0, row); err != nil {
				t.Fatal(err)
			}
		}
	}
	if gets, _ := r.Stats(); gets != n {
		t.Errorf("two passes with a large cache made %d GETs, want %d", gets, n)
	}
}

func TestCorruptionIsNamed(t *testing.T) {
	ctx := context.Background()
	setup := func() (*shard.MemStore, *shard.Index) {
		store := shard.NewMemStore()
		return store, writeSynth(t, store, "ds", shard.KindImageText, 40, shard.WriterOptions{BatchBytes: 8 << 10})
	}
	t.Run("flipped byte", func(t *testing.T) {
		store, ix := setup()
		b := ix.Shards[0].Batches[1]
		store.Corrupt("ds/shard-00000.arrow", b.Offset+b.Length/2, 0x5a)
		r := shard.NewReader(store, "ds", ix, shard.ReaderOptions{})
		row := ix.Shards[0].Batches[0].Rows
		_, err := r.Get(ctx, 0, row)
		if err == nil || !strings.Contains(err.Error(), "ds/shard-00000.arrow batch 1") || !strings.Contains(err.Error(), "crc32c") {
			t.Fatalf("Get on a corrupted batch = %v; want a crc32c error naming the object and batch", err)
		}
		var ce *shard.CorruptError
		if !errors.As(err, &ce) || ce.Object != "ds/shard-00000.arrow" {
			t.Errorf("Get on a corrupted batch = %T %v; want a *shard.CorruptError for ds/shard-00000.arrow, so the job fails at once", err, err)
		}
		if _, err := r.Get(ctx, 0, 0); err != nil {
			t.Errorf("Get on an intact batch of the same shard = %v", err)
		}
	})
	t.Run("sha256 on request", func(t *testing.T) {
		store, ix := setup()
		ix.Shards[0].Batches[0].SHA256 = strings.Repeat("0", 64)
		r := shard.NewReader(store, "ds", ix, shard.ReaderOptions{})
		if _, err := r.Get(ctx, 0, 0); err != nil {
			t.Fatalf("Get without VerifySHA256 = %v; the bytes are intact", err)
		}
		r = shard.NewReader(store, "ds", ix, shard.ReaderOptions{VerifySHA256: true})
		_, err := r.Get(ctx, 0, 0)
		if err == nil || !strings.Contains(err.Error(), "ds/shard-00000.arrow batch 0") || !strings.Contains(err.Error(), "sha256") {
			t.Fatalf("Get with VerifySHA256 and a wrong sha256 = %v; want a sha256 error naming the batch", err)
		}
		if ce := (*shard.CorruptError)(nil); !errors.As(err, &ce) {
			t.Errorf("sha256 mismatch = %T; want a *shard.CorruptError", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		store, ix := setup()
		si := ix.Shards[0]
		last := si.Batches[len(si.Batches)-1]
		store.Truncate("ds/shard-00000.arrow", last.Offset+last.Length/2)
		r := shard.NewReader(store, "ds", ix, shard.ReaderOptions{})
		_, err := r.Get(ctx, 0, si.Rows-1)
		if err == nil || !strings.Contains(err.Error(), "ds/shard-00000.arrow") {
			t.Fatalf("Get on a truncated batch = %v; want an error naming the object", err)
		}
		if _, err := r.Get(ctx, 0, 0); err != nil {
			t.Errorf("Get on an intact batch of the truncated shard = %v", err)
		}
	})
	t.Run("truncated footer, index v1", func(t *testing.T) {
		store, ix := setup()
		store.Truncate("ds/shard-00000.arrow", ix.Shards[0].Size-100)
		r := shard.NewReader(store, "ds", asV1(ix), shard.ReaderOptions{})
		_, err := r.Get(ctx, 0, 0)
		if err == nil || !strings.Contains(err.Error(), "ds/shard-00000.arrow") || !strings.Contains(err.Error(), "footer") {
			t.Fatalf("Get on a shard without footer through a v1 index = %v; want a footer error naming the object", err)
		}
	})
	for _, v1 := range []bool{false, true} {
		t.Run(fmt.Sprintf("schema mismatch, index v1 %v", v1), func(t *testing.T) {
			store, ix := setup()
			if v1 {
				ix = asV1(ix)
			}
			ix.Kind = shard.KindText
			r := shard.NewReader(store, "ds", ix, shard.ReaderOptions{})
			before := store.Gets()
			_, err := r.Get(ctx, 0, 0)
			if err == nil || !strings.Contains(err.Error(), "ds/shard-00000.arrow") || !strings.Contains(err.Error(), "schema mismatch") {
				t.Fatalf("Get with the wrong kind = %v; want a schema mismatch naming the object", err)
			}
			st := r.Stream(ctx, func(i int64) (shard.Loc, bool) { return shard.Loc{Shard: 0, Row: i}, i < ix.Shards[0].Rows }, 0)
			if _, _, err := st.Next(); err == nil || !strings.Contains(err.Error(), "schema mismatch") {
				t.Fatalf("Stream.Next with the wrong kind = %v; want a schema mismatch", err)
			}
			r.Close()
			if got := store.Gets() - before; !v1 && got != 0 {
				t.Errorf("with a v2 index whose schema is not the kind's, the reader made %d GETs, want none", got)
			}
		})
	}
	t.Run("undecodable image", func(t *testing.T) {
		store := shard.NewMemStore()
		w, err := shard.NewWriter(ctx, store, "ds", shard.WriterOptions{Kind: shard.KindImageText})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5; i++ {
			s := synth.Sample(shard.KindImageText, 1, i)
			if i == 3 {
				s.Image.Data = []byte("this is not a png at all")
			}
			if err := w.Add(s); err != nil {
				t.Fatal(err)
			}
		}
		ix, err := w.Close()
		if err != nil {
			t.Fatal(err)
		}
		r := shard.NewReader(store, "ds", ix, shard.ReaderOptions{})
		_, err = r.Get(ctx, 0, 0)
		if err == nil || !strings.Contains(err.Error(), "ds/shard-00000.arrow row 3") || !strings.Contains(err.Error(), "undecodable image") {
			t.Fatalf("Get with a bad image in the batch = %v; want an error naming object and row 3", err)
		}
	})
	t.Run("no index", func(t *testing.T) {
		_, err := shard.OpenReader(ctx, shard.NewMemStore(), "nothing", shard.ReaderOptions{})
		if !errors.Is(err, shard.ErrNotFound) || !strings.Contains(err.Error(), "index.json") {
			t.Fatalf("OpenReader without an index = %v; want ErrNotFound naming index.json", err)
		}
	})
}

func TestIndexWrittenLast(t *testing.T) {
	ctx := context.Background()
	rec := &recordingStore{ObjectStore: shard.NewMemStore()}
	writeSynth(t, rec, "ds", shard.KindText, 300, shard.WriterOptions{BatchBytes: 4 << 10, ShardBytes: 16 << 10})
	if len(rec.puts) < 3 || rec.puts[len(rec.puts)-1] != "ds/index.json" {
		t.Fatalf("puts %v: want shards first and ds/index.json last", rec.puts)
	}
	for _, k := range rec.puts[:len(rec.puts)-1] {
		if !strings.HasPrefix(k, "ds/shard-") {
			t.Errorf("unexpected put %q before the index", k)
		}
	}
	// A failing upload leaves no index behind.
	fail := &recordingStore{ObjectStore: shard.NewMemStore(), failAfter: 2}
	_, err := synth.Write(ctx, fail, "ds", shard.KindText, 300, 1, shard.WriterOptions{BatchBytes: 4 << 10, ShardBytes: 16 << 10})
	if err == nil {
		t.Fatal("Write with a failing store succeeded")
	}
	if _, err := fail.Stat(ctx, "ds/index.json"); !errors.Is(err, shard.ErrNotFound) {
		t.Errorf("after a failed ingest, Stat(index) = %v, want ErrNotFound", err)
	}
}

type recordingStore struct {
	shard.ObjectStore
	puts      []string
	failAfter int
}

func (r *recordingStore) Put(ctx context.Context, key string, body io.Reader, size int64) error {
	if r.failAfter > 0 && len(r.puts) >= r.failAfter {
		return fmt.Errorf("put %q: injected failure", key)
	}
	r.puts = append(r.puts, key)
	return r.ObjectStore.Put(ctx, key, body, size)
}

func TestStreamPrefetchesInOrder(t *testing.T) {
	ctx := context.Background()
	store := shard.NewMemStore()
	ix := writeSynth(t, store, "ds", shard.KindTokens, 500, shard.WriterOptions{BatchBytes: 2 << 10, ShardBytes: 8 << 10})
	r := shard.NewReader(store, "ds", ix, shard.ReaderOptions{Fetchers: 3})
	var locs []shard.Loc
	for s := len(ix.Shards) - 1; s >= 0; s-- {
		for row := int64(0); row < ix.Shards[s].Rows; row += 3 {
			locs = append(locs, shard.Loc{Shard: s, Row: row})
		}
	}
	st := r.Stream(ctx, func(i int64) (shard.Loc, bool) {
		if i >= int64(len(locs)) {
			return shard.Loc{}, false
		}
		return locs[i], true
	}, 64)
	n := 0
	for {
		s, loc, err := st.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if loc != locs[n] {
			t.Fatalf("Next #%d at %v, want %v", n, loc, locs[n])
		}
		want, _ := r.Get(ctx, loc.Shard, loc.Row)
		if s.ID != want.ID {
			t.Fatalf("Next #%d = %s, want %s", n, s.ID, want.ID)
		}
		n++
	}
	r.Close()
	if n != len(locs) {
		t.Fatalf("stream yielded %d samples, want %d", n, len(locs))
	}
}

func TestWriterRejectsBadSamples(t *testing.T) {
	w, err := shard.NewWriter(context.Background(), shard.NewMemStore(), "ds", shard.WriterOptions{Kind: shard.KindImageText})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	err = w.Add(shard.Sample{ID: "x1", Caption: "no image"})
	if err == nil || !strings.Contains(err.Error(), "x1") {
		t.Fatalf("Add(image-text without image) = %v; want an error naming the sample", err)
	}
}

func TestShardSizes(t *testing.T) {
	store := shard.NewMemStore()
	ix := writeSynth(t, store, "ds", shard.KindImageText, 250, shard.WriterOptions{BatchBytes: 12 << 10, ShardBytes: 50 << 10})
	for i, s := range ix.Shards {
		if i < len(ix.Shards)-1 && (s.Size < 30<<10 || s.Size > 75<<10) {
			t.Errorf("shard %d: %d bytes, want about 50 KiB", i, s.Size)
		}
		for j, b := range s.Batches {
			if j < len(s.Batches)-1 && (b.Length < 10<<10 || b.Length > 24<<10) {
				t.Errorf("shard %d batch %d: %d bytes, want about 12 KiB", i, j, b.Length)
			}
		}
	}
	data, _ := store.GetRange(context.Background(), "ds/index.json", 0, -1)
	if _, err := shard.ParseIndex(data, "ds/index.json"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"kind": "image-text"`)) {
		t.Errorf("index does not record the kind:\n%s", data[:200])
	}
}

func TestStreamCoalescesAdjacentBatches(t *testing.T) {
	ctx := context.Background()
	store := shard.NewMemStore()
	ix := writeSynth(t, store, "ds", shard.KindTokens, 400, shard.WriterOptions{BatchBytes: 1 << 10, ShardBytes: 64 << 10})
	batches := 0
	for _, s := range ix.Shards {
		batches += len(s.Batches)
	}
	read := func(coalesce int64) int {
		r := shard.NewReader(store, "ds", ix, shard.ReaderOptions{CoalesceBytes: coalesce, Fetchers: 2})
		defer r.Close()
		before := store.Gets()
		st := r.Stream(ctx, func(i int64) (shard.Loc, bool) {
			if i >= ix.Shards[0].Rows {
				return shard.Loc{}, false
			}
			return shard.Loc{Shard: 0, Row: i}, true
		}, 1000)
		for {
			if _, _, err := st.Next(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		return store.Gets() - before
	}
	n := len(ix.Shards[0].Batches)
	if got := read(1); got != n {
		t.Errorf("without coalescing: %d GETs for %d batches, want %d", got, n, n)
	}
	if got := read(1 << 20); got >= n/2 {
		t.Errorf("with coalescing: %d GETs for %d adjacent batches queued together, want far fewer", got, n)
	}
}

func TestStreamStopsCleanly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	store := shard.NewMemStore()
	ix := writeSynth(t, store, "ds", shard.KindText, 300, shard.WriterOptions{BatchBytes: 1 << 10, ShardBytes: 8 << 10})
	b := ix.Shards[1].Batches[0]
	store.Corrupt("ds/"+ix.Shards[1].Key, b.Offset+b.Length-1, 0x01)
	before := runtime.NumGoroutine()
	r := shard.NewReader(store, "ds", ix, shard.ReaderOptions{})
	st := r.Stream(ctx, func(i int64) (shard.Loc, bool) { return shard.Loc{Shard: 0, Row: i}, i < ix.Shards[0].Rows }, 64)
	for {
		if _, _, err := st.Next(); err != nil {
			break
		}
	}
	// A stream over the corrupt shard fails with the object named.
	st = r.Stream(ctx, func(i int64) (shard.Loc, bool) { return shard.Loc{Shard: 1, Row: i}, i < ix.Shards[1].Rows }, 64)
	_, _, err := st.Next()
	if err == nil || !strings.Contains(err.Error(), "ds/"+ix.Shards[1].Key) {
		t.Fatalf("Next on a corrupt batch = %v; want an error naming the object", err)
	}
	cancel()
	r.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Errorf("%d goroutines after Close, %d before the reader", g, before)
	}
}

// rangeLog records the range GETs made through it.
type rangeLog struct {
	shard.ObjectStore
	mu   sync.Mutex
	gets []string
}

func (l *rangeLog) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	l.mu.Lock()
	l.gets = append(l.gets, fmt.Sprintf("%s [%d, +%d)", key, off, n))
	l.mu.Unlock()
	return l.ObjectStore.GetRange(ctx, key, off, n)
}

// TestStreamFetchesWholeShards reads two shards in a shuffled order with a
// window that holds them: each is fetched with one GET of the whole object.
func TestStreamFetchesWholeShards(t *testing.T) {
	ctx := context.Background()
	mem := shard.NewMemStore()
	ix := writeSynth(t, mem, "ds", shard.KindTokens, 300, shard.WriterOptions{BatchBytes: 1 << 10, ShardBytes: 16 << 10})
	if len(ix.Shards) < 2 || len(ix.Shards[1].Batches) < 3 {
		t.Fatalf("want >= 2 shards of >= 3 batches, got %d shards", len(ix.Shards))
	}
	rows := ix.Shards[0].Rows + ix.Shards[1].Rows
	order, err := shard.NewOrder([]int64{ix.Shards[0].Rows, ix.Shards[1].Rows}, 5, rows)
	if err != nil {
		t.Fatal(err)
	}
	log := &rangeLog{ObjectStore: mem}
	r := shard.NewReader(log, "ds", ix, shard.ReaderOptions{Fetchers: 2})
	st := r.Stream(ctx, func(i int64) (shard.Loc, bool) {
		if i >= rows {
			return shard.Loc{}, false
		}
		return order.At(0, i), true
	}, 0)
	for {
		if _, _, err := st.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	var want []string
	for _, s := range ix.Shards[:2] {
		want = append(want, fmt.Sprintf("ds/%s [0, +%d)", s.Key, s.Size))
	}
	slices.Sort(log.gets)
	if !slices.Equal(log.gets, want) {
		t.Errorf("stream over two whole shards made GETs %v, want %v", log.gets, want)
	}
}

// TestStreamWindowIsBoundedInBytes checks that the batches a stream has
// fetched ahead of their first use never add up to more than AheadBytes
// (or one batch, when a single batch is larger), whatever the bound, and
// that a large window fetches every batch once.
func TestStreamWindowIsBoundedInBytes(t *testing.T) {
	ctx := context.Background()
	mem := shard.NewMemStore()
	ix := writeSynth(t, mem, "ds", shard.KindTokens, 400, shard.WriterOptions{BatchBytes: 1 << 10, ShardBytes: 8 << 10})
	order, err := shard.NewOrder(ix.ShardRows(), 9, 30)
	if err != nil {
		t.Fatal(err)
	}
	type batch struct{ shard, b int }
	largest := int64(0)
	byRange := map[string]batch{}
	for s, si := range ix.Shards {
		for b, bi := range si.Batches {
			largest = max(largest, bi.Length)
			byRange[fmt.Sprintf("ds/%s [%d, +%d)", si.Key, bi.Offset, bi.Length)] = batch{s, b}
		}
	}
	batchOf := func(l shard.Loc) batch {
		row := l.Row
		for b, bi := range ix.Shards[l.Shard].Batches {
			if row < bi.Rows {
				return batch{l.Shard, b}
			}
			row -= bi.Rows
		}
		t.Fatalf("row %v outside its shard", l)
		return batch{}
	}
	firstUse := map[batch]int64{}
	for i := order.Len() - 1; i >= 0; i-- {
		firstUse[batchOf(order.At(0, i))] = i
	}
	for _, ahead := range []int64{1, 3 << 10, 8 << 10, 64 << 10} {
		log := &rangeLog{ObjectStore: mem}
		r := shard.NewReader(log, "ds", ix, shard.ReaderOptions{CoalesceBytes: 1, AheadBytes: ahead, CacheBytes: 1 << 30, Fetchers: 3})
		st := r.Stream(ctx, func(i int64) (shard.Loc, bool) {
			if i >= order.Len() {
				return shard.Loc{}, false
			}
			return order.At(0, i), true
		}, 0)
		for i := int64(0); ; i++ {
			if _, _, err := st.Next(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			var early int64 // bytes of batches fetched before their first use
			log.mu.Lock()
			for _, g := range log.gets {
				k, ok := byRange[g]
				if !ok {
					t.Fatalf("GET %s is not one batch", g)
				}
				if firstUse[k] > i {
					early += ix.Shards[k.shard].Batches[k.b].Length
				}
			}
			log.mu.Unlock()
			if bound := max(ahead, largest); early > bound {
				t.Fatalf("AheadBytes %d: after sample %d, %d bytes fetched ahead of their first use, want <= %d", ahead, i, early, bound)
			}
		}
		r.Close()
		if gets, _ := r.Stats(); gets != int64(countBatches(ix)) {
			t.Errorf("AheadBytes %d: %d GETs for %d batches, want one each (no eviction, no refetch)", ahead, gets, countBatches(ix))
		}
	}
}

// TestPrefetchThenGet checks Reader.Prefetch: after it has fetched the
// batches of some locations (Close waits for it), Gets of those samples
// issue no GET, and they return what a reader without prefetch returns.
func TestPrefetchThenGet(t *testing.T) {
	ctx := context.Background()
	store := shard.NewMemStore()
	ix := writeSynth(t, store, "ds", shard.KindTokens, 300, shard.WriterOptions{BatchBytes: 2 << 10, ShardBytes: 8 << 10})
	locs := []shard.Loc{{Shard: len(ix.Shards) - 1, Row: 1}, {Shard: 0, Row: 5}, {Shard: 1, Row: 0}, {Shard: 99, Row: 0}, {Shard: 0, Row: 1 << 40}}
	r := shard.NewReader(store, "ds", ix, shard.ReaderOptions{Fetchers: 2})
	r.Prefetch(ctx, locs)
	r.Close() // waits for the background fetches
	gets, _ := r.Stats()
	if gets == 0 {
		t.Fatal("Prefetch issued no GET")
	}
	ref := shard.NewReader(store, "ds", ix, shard.ReaderOptions{})
	for _, l := range locs[:3] {
		got, err := r.Get(ctx, l.Shard, l.Row)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.Get(ctx, l.Shard, l.Row)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != want.ID || !slices.Equal(got.Tokens, want.Tokens) {
			t.Errorf("Get(%d, %d) after Prefetch = %s, want %s", l.Shard, l.Row, got.ID, want.ID)
		}
	}
	if after, _ := r.Stats(); after != gets {
		t.Errorf("Gets of prefetched samples issued %d more GETs, want 0", after-gets)
	}
}
