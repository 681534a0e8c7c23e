package shard_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/loomtrain/loom/shard"
)

// streamAll reads [off, off+n) of key with StreamRange, checking that the
// progress calls grow and end at n.
func streamAll(t *testing.T, s *shard.S3Store, key string, off, n int64) ([]byte, []int) {
	t.Helper()
	buf := make([]byte, n)
	var calls []int
	err := s.StreamRange(context.Background(), key, off, buf, func(filled int) error {
		if len(calls) > 0 && filled <= calls[len(calls)-1] {
			t.Errorf("StreamRange(%s, %d, %d): progress(%d) after progress(%d)", key, off, n, filled, calls[len(calls)-1])
		}
		calls = append(calls, filled)
		return nil
	})
	if err != nil {
		t.Fatalf("StreamRange(%s, %d, %d): %v", key, off, n, err)
	}
	if n > 0 && (len(calls) == 0 || calls[len(calls)-1] != int(n)) {
		t.Fatalf("StreamRange(%s, %d, %d): progress calls %v, want the last to be %d", key, off, n, calls, n)
	}
	return buf, calls
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// TestStreamRangeMatchesGetRange checks S3Store.StreamRange against GetRange
// (the reference) over ranges at the start, middle and end of an object.
func TestStreamRangeMatchesGetRange(t *testing.T) {
	ctx := context.Background()
	s := embeddedS3(t, "")
	data := pattern(3<<20 + 17)
	if err := s.Put(ctx, "obj", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ off, n int64 }{{0, 1}, {0, int64(len(data))}, {5, 1 << 20}, {int64(len(data)) - 100, 100}, {1 << 20, 2 << 20}} {
		got, _ := streamAll(t, s, "obj", r.off, r.n)
		want, err := s.GetRange(ctx, "obj", r.off, r.n)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("StreamRange(obj, %d, %d) differs from GetRange", r.off, r.n)
		}
	}
	buf := make([]byte, 10)
	err := s.StreamRange(ctx, "obj", int64(len(data))-5, buf, func(int) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "obj") {
		t.Errorf("StreamRange past the end: got %v, want an error naming obj", err)
	}
	err = s.StreamRange(ctx, "missing", 0, buf, func(int) error { return nil })
	if !errors.Is(err, shard.ErrNotFound) {
		t.Errorf("StreamRange(missing): got %v, want ErrNotFound", err)
	}
}

// TestStreamRangeResumesCutBody cuts the body of the first GET after half of
// it: the retry asks only for the rest, and the bytes are exact.
func TestStreamRangeResumesCutBody(t *testing.T) {
	ctx := context.Background()
	s, fp := faultyStore(t, 4)
	data := pattern(1<<20 + 3)
	if err := s.Put(ctx, "cut/obj", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	fp.mu.Lock()
	fp.cut["cut/obj"] = 1
	fp.mu.Unlock()
	got, calls := streamAll(t, s, "cut/obj", 10, int64(len(data))-10)
	if !bytes.Equal(got, data[10:]) {
		t.Fatalf("StreamRange after a cut body: bytes differ from what was stored")
	}
	if n := fp.count("cut/obj"); n != 3 { // the PUT, the cut GET, the resumed GET
		t.Errorf("requests for cut/obj: got %d, want 3 (put, cut get, resumed get); progress %v", n, calls)
	}
}

// TestStreamSegmentsMatchesGetRange reads a range of an object into
// segments of odd sizes, with the first GET's body cut after half of it:
// the segments hold exactly GetRange's bytes (the reference), buffers are
// asked for once each, in order, and progress only grows within a segment.
func TestStreamSegmentsMatchesGetRange(t *testing.T) {
	ctx := context.Background()
	s, fp := faultyStore(t, 4)
	data := pattern(1<<20 + 77)
	if err := s.Put(ctx, "seg/obj", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	fp.mu.Lock()
	fp.cut["seg/obj"] = 1
	fp.mu.Unlock()
	sizes := []int{3, 100_000, 1, 400_000, 300_000, 248_000}
	off := int64(50)
	total := 0
	for _, n := range sizes {
		total += n
	}
	bufs := make([][]byte, len(sizes))
	var allocs []int
	last := make([]int, len(sizes))
	err := s.StreamSegments(ctx, "seg/obj", off, sizes, func(i int) []byte {
		allocs = append(allocs, i)
		bufs[i] = make([]byte, sizes[i])
		return bufs[i]
	}, func(i, filled int) error {
		if bufs[i] == nil || filled <= last[i] || filled > sizes[i] {
			t.Errorf("progress(%d, %d) after progress(%d, %d), segment of %d bytes, allocated %v", i, filled, i, last[i], sizes[i], bufs[i] != nil)
		}
		last[i] = filled
		return nil
	})
	if err != nil {
		t.Fatalf("StreamSegments(seg/obj, %d, %v): %v", off, sizes, err)
	}
	if !slices.Equal(allocs, []int{0, 1, 2, 3, 4, 5}) {
		t.Errorf("alloc calls %v, want each segment once, in order", allocs)
	}
	want, err := s.GetRange(ctx, "seg/obj", off, int64(total))
	if err != nil {
		t.Fatal(err)
	}
	if got := bytes.Join(bufs, nil); !bytes.Equal(got, want) {
		t.Errorf("StreamSegments after a cut body: %d bytes differ from GetRange's %d", len(got), len(want))
	}
	if n := fp.count("seg/obj"); n != 4 { // the PUT, the cut GET, the resumed GET, the reference GET
		t.Errorf("requests for seg/obj: got %d, want 4 (put, cut get, resumed get, reference get)", n)
	}
	err = s.StreamSegments(ctx, "seg/obj", 0, []int{10, 0}, func(i int) []byte { return make([]byte, 10) }, func(int, int) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "seg/obj") {
		t.Errorf("StreamSegments with an empty segment: got %v, want an error naming seg/obj", err)
	}
}

// TestStreamRangeProgressErrorStops checks that an error from progress ends
// the read at once, unretried and unwrapped.
func TestStreamRangeProgressErrorStops(t *testing.T) {
	ctx := context.Background()
	s, fp := faultyStore(t, 4)
	data := pattern(1 << 20)
	if err := s.Put(ctx, "stop/obj", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("enough")
	err := s.StreamRange(ctx, "stop/obj", 0, make([]byte, len(data)), func(int) error { return stop })
	if err != stop {
		t.Errorf("StreamRange with a failing progress: got %v, want %v", err, stop)
	}
	if n := fp.count("stop/obj"); n != 2 {
		t.Errorf("requests for stop/obj: got %d, want 2 (put, one get)", n)
	}
}

// TestReaderStreamingMatchesWholeRange reads a dataset through the Reader
// from S3 (batches checked and decoded as a range streams in) and from the
// in-memory store (whole ranges, the reference): same samples, same order.
func TestReaderStreamingMatchesWholeRange(t *testing.T) {
	ctx := context.Background()
	s3 := embeddedS3(t, "")
	mem := shard.NewMemStore()
	wo := shard.WriterOptions{BatchBytes: 8 << 10, ShardBytes: 64 << 10}
	ix := writeSynth(t, mem, "ds", shard.KindImageText, 120, wo)
	if err := mem.List(ctx, "ds/", func(oi shard.ObjectInfo) error {
		b, err := mem.GetRange(ctx, oi.Key, 0, -1)
		if err != nil {
			return err
		}
		return s3.Put(ctx, oi.Key, bytes.NewReader(b), int64(len(b)))
	}); err != nil {
		t.Fatal(err)
	}
	order, err := shard.NewOrder(ix.ShardRows(), 3, 40)
	if err != nil {
		t.Fatal(err)
	}
	// read streams the dataset with a window of ahead samples (0: bounded
	// in bytes only).
	read := func(store shard.ObjectStore, coalesce int64, ahead int) ([]shard.Sample, int64) {
		r, err := shard.OpenReader(ctx, store, "ds", shard.ReaderOptions{Fetchers: 3, CoalesceBytes: coalesce})
		if err != nil {
			t.Fatal(err)
		}
		st := r.Stream(ctx, func(i int64) (shard.Loc, bool) {
			if i >= order.Len() {
				return shard.Loc{}, false
			}
			return order.At(0, i), true
		}, ahead)
		var out []shard.Sample
		for {
			smp, loc, err := st.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("Next at %v: %v", loc, err)
			}
			out = append(out, smp)
		}
		r.Close() // the last GET is counted once its fetcher is done
		gets, _ := r.Stats()
		return out, gets
	}
	want, _ := read(mem, 40<<10, 64)
	// 40 KiB runs (ranges inside shards), then the default 64 MiB with the
	// default window, which holds the dataset: every shard in one GET of
	// the whole object.
	for _, coalesce := range []int64{40 << 10, 0} {
		ahead := 64
		if coalesce == 0 {
			ahead = 0
		}
		got, gets := read(s3, coalesce, ahead)
		if len(got) != len(want) || len(got) != 120 {
			t.Fatalf("coalesce %d: read %d samples from S3, %d from memory, want 120 each", coalesce, len(got), len(want))
		}
		for i := range got {
			if !reflect.DeepEqual(normalize(got[i]), normalize(want[i])) {
				t.Fatalf("coalesce %d: sample %d: from S3 %s, from memory %s", coalesce, i, got[i].ID, want[i].ID)
			}
		}
		if nb := countBatches(ix); coalesce > 0 && gets >= int64(nb) {
			t.Errorf("coalesce %d: S3 reader made %d GETs for %d batches: want fewer (coalesced)", coalesce, gets, nb)
		}
		if coalesce == 0 && gets != int64(len(ix.Shards)) {
			t.Errorf("default coalescing: S3 reader made %d GETs for %d shards, want one whole-object GET each", gets, len(ix.Shards))
		}
	}
}

func countBatches(ix *shard.Index) int {
	n := 0
	for _, s := range ix.Shards {
		n += len(s.Batches)
	}
	return n
}

// TestReaderStreamingNamesCorruptBatch corrupts one batch in S3: the error
// names the object, and the batches streamed before it were served.
func TestReaderStreamingNamesCorruptBatch(t *testing.T) {
	ctx := context.Background()
	s3 := embeddedS3(t, "")
	ix := writeSynth(t, s3, "ds", shard.KindImageText, 40, shard.WriterOptions{BatchBytes: 1 << 10, ShardBytes: 1 << 20})
	si := ix.Shards[0]
	if len(si.Batches) < 3 {
		t.Fatalf("want >= 3 batches in shard 0, got %d", len(si.Batches))
	}
	key := "ds/" + si.Key
	b, err := s3.GetRange(ctx, key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b[si.Batches[2].Offset+si.Batches[2].Length/2] ^= 0xff
	if err := s3.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	r := shard.NewReader(s3, "ds", ix, shard.ReaderOptions{Fetchers: 1})
	defer r.Close()
	st := r.Stream(ctx, func(i int64) (shard.Loc, bool) { return shard.Loc{Shard: 0, Row: i}, i < si.Rows }, int(si.Rows))
	var n int64
	for {
		_, loc, err := st.Next()
		if err != nil {
			want := fmt.Sprintf("object %s batch 2", key)
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "crc32c") {
				t.Fatalf("Next at %v: got %v, want an error containing %q and crc32c", loc, err, want)
			}
			if ce := (*shard.CorruptError)(nil); !errors.As(err, &ce) || ce.Object != key {
				t.Errorf("Next at %v: %T, want a *shard.CorruptError naming %s", loc, err, key)
			}
			break
		}
		n++
	}
	if first2 := si.Batches[0].Rows + si.Batches[1].Rows; n != first2 {
		t.Errorf("served %d rows before the corrupt batch, want %d", n, first2)
	}
}

// chunkStore is a MemStore that streams ranges into segments (like
// S3Store.StreamSegments) in chunks of a few bytes, so that chunk edges fall
// everywhere: inside the file header before the first batch, inside and
// between batches. It checks that buffers are asked for in order, once,
// and only when their first byte is due.
type chunkStore struct {
	*shard.MemStore
	chunk int
}

func (c *chunkStore) StreamSegments(ctx context.Context, key string, off int64, sizes []int, alloc func(i int) []byte, progress func(i, filled int) error) error {
	total := 0
	for _, n := range sizes {
		total += n
	}
	data, err := c.GetRange(ctx, key, off, int64(total))
	if err != nil {
		return err
	}
	if len(data) != total {
		return fmt.Errorf("%s: short range", key)
	}
	pos := 0
	for i, n := range sizes {
		buf := alloc(i)
		if len(buf) != n {
			return fmt.Errorf("%s: segment %d: alloc gave %d bytes, want %d", key, i, len(buf), n)
		}
		for filled := 0; filled < n; {
			k := copy(buf[filled:], data[pos:pos+min(c.chunk, n-filled)])
			filled += k
			pos += k
			if err := progress(i, filled); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestReaderStreamsWholeObjectsInChunks reads whole shards (header,
// batches, footer in one GET) and coalesced runs streamed in odd-sized
// chunks, and compares every sample with Get through a plain store.
func TestReaderStreamsWholeObjectsInChunks(t *testing.T) {
	ctx := context.Background()
	mem := shard.NewMemStore()
	ix := writeSynth(t, mem, "ds", shard.KindImageText, 60, shard.WriterOptions{BatchBytes: 4 << 10, ShardBytes: 24 << 10})
	ref := shard.NewReader(mem, "ds", ix, shard.ReaderOptions{})
	defer ref.Close()
	for _, c := range []struct {
		chunk    int
		coalesce int64
	}{{7, 0}, {512, 0}, {1000, 9 << 10}, {1 << 20, 0}} {
		cs := &chunkStore{MemStore: mem, chunk: c.chunk}
		r := shard.NewReader(cs, "ds", ix, shard.ReaderOptions{CoalesceBytes: c.coalesce})
		st := r.Stream(ctx, func(i int64) (shard.Loc, bool) {
			for s := range ix.Shards {
				if i < ix.Shards[s].Rows {
					return shard.Loc{Shard: s, Row: i}, true
				}
				i -= ix.Shards[s].Rows
			}
			return shard.Loc{}, false
		}, 0)
		n := 0
		for {
			got, loc, err := st.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("chunk %d, coalesce %d: Next at %v: %v", c.chunk, c.coalesce, loc, err)
			}
			want, err := ref.Get(ctx, loc.Shard, loc.Row)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalize(got), normalize(want)) {
				t.Fatalf("chunk %d, coalesce %d: sample at %v = %s, want %s", c.chunk, c.coalesce, loc, got.ID, want.ID)
			}
			n++
		}
		r.Close()
		if n != int(ix.Rows) {
			t.Errorf("chunk %d, coalesce %d: streamed %d samples, want %d", c.chunk, c.coalesce, n, ix.Rows)
		}
	}
}

// TestReaderOverVersity streams a dataset from versitygw (a separate
// server process) in a shuffled order with the default options: every
// shard comes in one whole-object GET, every sample matches random access
// through the in-memory copy.
func TestReaderOverVersity(t *testing.T) {
	ctx := context.Background()
	s3 := versity(t)
	mem := shard.NewMemStore()
	ix := writeSynth(t, mem, "ds", shard.KindImageText, 90, shard.WriterOptions{BatchBytes: 2 << 10, ShardBytes: 8 << 10})
	if err := mem.List(ctx, "ds/", func(oi shard.ObjectInfo) error {
		b, err := mem.GetRange(ctx, oi.Key, 0, -1)
		if err != nil {
			return err
		}
		return s3.Put(ctx, oi.Key, bytes.NewReader(b), int64(len(b)))
	}); err != nil {
		t.Fatal(err)
	}
	order, err := shard.NewOrder(ix.ShardRows(), 11, 25)
	if err != nil {
		t.Fatal(err)
	}
	ref := shard.NewReader(mem, "ds", ix, shard.ReaderOptions{})
	defer ref.Close()
	r, err := shard.OpenReader(ctx, s3, "ds", shard.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := r.Stream(ctx, func(i int64) (shard.Loc, bool) {
		if i >= order.Len() {
			return shard.Loc{}, false
		}
		return order.At(0, i), true
	}, 0)
	n := 0
	for {
		got, loc, err := st.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next at %v: %v", loc, err)
		}
		want, err := ref.Get(ctx, loc.Shard, loc.Row)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(want)) {
			t.Fatalf("sample at %v from versitygw = %s, want %s", loc, got.ID, want.ID)
		}
		n++
	}
	r.Close()
	if n != int(ix.Rows) {
		t.Fatalf("streamed %d samples, want %d", n, ix.Rows)
	}
	if gets, _ := r.Stats(); len(ix.Shards) < 2 || gets != int64(len(ix.Shards)) {
		t.Errorf("%d GETs for %d shards, want one whole-object GET per shard (and >= 2 shards)", gets, len(ix.Shards))
	}
}
