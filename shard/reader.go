package shard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	_ "image/jpeg" // image formats the reader can check
	_ "image/png"
	"io"
	"sync"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// ReaderOptions configures a Reader.
type ReaderOptions struct {
	// CacheBytes bounds the decoded batches kept in memory (default 256 MiB).
	CacheBytes int64
	// Fetchers bounds concurrent range GETs made by prefetching (default 4).
	Fetchers int
	// CoalesceBytes bounds the range GETs of prefetching: adjacent batches
	// of one shard that are queued together are fetched with one GET of up
	// to this many bytes (default 64 MiB; 1 fetches each batch alone). A
	// run of every batch of a shard is fetched as the whole object, which
	// servers send without copying (versitygw: sendfile), unlike a range.
	// Random access with Get always fetches one batch.
	CoalesceBytes int64
	// AheadBytes bounds how far a Stream reads ahead of its consumer: the
	// stored size of the distinct batches holding the samples scheduled
	// and not yet returned (default 3/4 of CacheBytes; a Stream demotes
	// the batches it is done with to be evicted first, so the batches it
	// fetched ahead stay cached until they are used; a value above
	// CacheBytes is lowered to it). Like a raw reader with all its GETs in
	// flight, a large window keeps every fetcher busy.
	AheadBytes int64
	// VerifySHA256 checks each batch's SHA256 too, not only its CRC32C.
	VerifySHA256 bool
	// SkipImageCheck turns off the check that every image's header decodes
	// and matches its stored size.
	SkipImageCheck bool
}

// goAlloc is the allocator of decoded batches. It must be the Go allocator
// (whose Free is a no-op, leaving memory to the garbage collector): decoded
// samples keep referencing the batch buffers after the record is released.
var goAlloc = memory.NewGoAllocator()

// Loc addresses one sample: a shard of a dataset and a row in it.
type Loc struct {
	Shard int
	Row   int64
}

// Reader gives random access to a dataset's samples by (shard, row). Each
// record batch is fetched with one range GET, checked against the CRC32C
// (and optionally the SHA256) in the index, decoded with the schema the
// index records (a version 1 index has none: the shard's footer is fetched
// and checked instead), and kept in a byte-bounded LRU cache. A Reader is
// safe for concurrent use.
type Reader struct {
	store  ObjectStore
	prefix string
	index  *Index
	opts   ReaderOptions

	mu       sync.Mutex
	cache    *lru[batchKey, []Sample] // guarded by mu
	inflight map[batchKey]*fetch      // guarded by mu
	footers  map[int]*footerFetch     // guarded by mu
	queue    []queued                 // prefetches not started, FIFO; guarded by mu
	queuedK  map[batchKey]bool        // keys in queue; guarded by mu
	workers  int                      // prefetch workers running; guarded by mu

	schemaOnce sync.Once
	schemaErr  error // version >= 2: the index's schema is not the kind's

	wg sync.WaitGroup

	statsMu sync.Mutex
	gets    int64
	fetched int64
}

type batchKey struct{ shard, batch int }

type fetch struct {
	done    chan struct{}
	samples []Sample
	err     error
}

type footerFetch struct {
	done chan struct{}
	data []byte
	err  error
}

type queued struct {
	ctx context.Context
	k   batchKey
}

// OpenReader reads and checks the index of the dataset under prefix.
func OpenReader(ctx context.Context, store ObjectStore, prefix string, opts ReaderOptions) (*Reader, error) {
	ix, err := ReadIndex(ctx, store, prefix)
	if err != nil {
		return nil, err
	}
	return NewReader(store, prefix, ix, opts), nil
}

// ReadIndex fetches and parses the index of the dataset under prefix.
func ReadIndex(ctx context.Context, store ObjectStore, prefix string) (*Index, error) {
	key := JoinKey(prefix, IndexName)
	data, err := store.GetRange(ctx, key, 0, -1)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("dataset %s: no %s (not a dataset, or its ingest has not finished): %w", prefix, IndexName, err)
		}
		return nil, fmt.Errorf("dataset %s: %w", prefix, err)
	}
	return ParseIndex(data, key)
}

// NewReader returns a reader of an index already loaded.
func NewReader(store ObjectStore, prefix string, ix *Index, opts ReaderOptions) *Reader {
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = 256 << 20
	}
	if opts.Fetchers <= 0 {
		opts.Fetchers = 4
	}
	if opts.CoalesceBytes <= 0 {
		opts.CoalesceBytes = 64 << 20
	}
	if opts.AheadBytes <= 0 {
		opts.AheadBytes = max(opts.CacheBytes/4*3, 1)
	}
	// Batches fetched ahead must stay cached until they are used.
	opts.AheadBytes = min(opts.AheadBytes, opts.CacheBytes)
	return &Reader{store: store, prefix: prefix, index: ix, opts: opts,
		cache: newLRU[batchKey, []Sample](opts.CacheBytes), inflight: map[batchKey]*fetch{},
		footers: map[int]*footerFetch{}, queuedK: map[batchKey]bool{}}
}

// Index returns the dataset's index.
func (r *Reader) Index() *Index { return r.index }

// Stats returns the range GETs made and the bytes they fetched.
func (r *Reader) Stats() (gets, bytes int64) {
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	return r.gets, r.fetched
}

// Close waits for background prefetches to finish.
func (r *Reader) Close() error {
	r.wg.Wait()
	return nil
}

func (r *Reader) objectName(shard int) string {
	return JoinKey(r.prefix, r.index.Shards[shard].Key)
}

// Get returns the sample at (shard, row). The sample's byte slices (image
// data) share memory with the reader's cache: read them, do not modify them.
func (r *Reader) Get(ctx context.Context, shard int, row int64) (Sample, error) {
	if shard < 0 || shard >= len(r.index.Shards) {
		return Sample{}, fmt.Errorf("dataset %s: shard %d out of range [0, %d)", r.prefix, shard, len(r.index.Shards))
	}
	si := &r.index.Shards[shard]
	b, in, ok := si.locate(row)
	if !ok {
		return Sample{}, fmt.Errorf("object %s: row %d out of range [0, %d)", r.objectName(shard), row, si.Rows)
	}
	samples, err := r.batch(ctx, batchKey{shard, b})
	if err != nil {
		return Sample{}, err
	}
	return samples[in], nil
}

// Prefetch queues the record batches holding locs for fetching in the
// background and returns at once, so that later Gets of those samples find
// them cached: a caller that knows its next samples (a trainer knows the
// sampler's next global batch) hides the GET latency behind its own work.
// Batches cached, in flight or queued are skipped; adjacent ones are
// coalesced as in Stream. Out-of-range locations are ignored and fetch
// errors are not reported here: the Get that needs the batch fetches it
// again and returns the error. ctx bounds the queued fetches; Close waits
// for them.
func (r *Reader) Prefetch(ctx context.Context, locs []Loc) { r.prefetch(ctx, locs) }

// prefetch queues the batches holding locs for fetching in the background
// (see prefetchKeys).
func (r *Reader) prefetch(ctx context.Context, locs []Loc) {
	keys := make([]batchKey, 0, len(locs))
	for _, loc := range locs {
		if k, _, ok := r.batchOf(loc); ok {
			keys = append(keys, k)
		}
	}
	r.prefetchKeys(ctx, keys)
}

// prefetchKeys queues batches for fetching in the background, skipping
// those cached, being fetched or already queued. Up to Fetchers workers
// take queued batches in FIFO order, so batches arrive in the order the
// stream needs them; queueing many at once lets a worker coalesce adjacent
// ones into one range GET.
func (r *Reader) prefetchKeys(ctx context.Context, keys []batchKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		if _, cached := r.cache.get(k); cached || r.inflight[k] != nil || r.queuedK[k] {
			continue
		}
		r.queue = append(r.queue, queued{ctx, k})
		r.queuedK[k] = true
	}
	for r.workers < r.opts.Fetchers && r.workers < len(r.queue) {
		r.workers++
		r.wg.Add(1)
		go r.worker()
	}
}

func (r *Reader) worker() {
	defer r.wg.Done()
	for {
		r.mu.Lock()
		if len(r.queue) == 0 {
			r.workers--
			r.mu.Unlock()
			return
		}
		q := r.queue[0]
		r.queue = r.queue[1:]
		delete(r.queuedK, q.k)
		if _, cached := r.cache.get(q.k); cached || r.inflight[q.k] != nil || q.ctx.Err() != nil {
			r.mu.Unlock()
			continue
		}
		lo, hi, fetches := r.claimRunLocked(q.k)
		r.mu.Unlock()
		r.loadRun(q.ctx, q.k.shard, lo, hi, fetches)
	}
}

// claimRunLocked extends batch k to the longest run of adjacent batches of
// the same shard that are queued (and neither cached nor being fetched),
// up to CoalesceBytes, takes them off the queue and registers them as in
// flight. Adjacent batches are adjacent bytes, so the run is fetched with
// one range GET.
func (r *Reader) claimRunLocked(k batchKey) (lo, hi int, fetches []*fetch) {
	bs := r.index.Shards[k.shard].Batches
	lo, hi = k.batch, k.batch
	size := bs[k.batch].Length
	limit := r.opts.CoalesceBytes
	take := func(b int) bool {
		kk := batchKey{k.shard, b}
		if b < 0 || b >= len(bs) || !r.queuedK[kk] || r.inflight[kk] != nil || size+bs[b].Length > limit {
			return false
		}
		if _, cached := r.cache.get(kk); cached {
			return false
		}
		size += bs[b].Length
		return true
	}
	for take(hi + 1) {
		hi++
	}
	for take(lo - 1) {
		lo--
	}
	if lo < hi || r.queuedK[k] {
		kept := r.queue[:0]
		for _, q := range r.queue {
			if q.k.shard == k.shard && q.k.batch >= lo && q.k.batch <= hi {
				delete(r.queuedK, q.k)
				continue
			}
			kept = append(kept, q)
		}
		r.queue = kept
	}
	for b := lo; b <= hi; b++ {
		f := &fetch{done: make(chan struct{})}
		r.inflight[batchKey{k.shard, b}] = f
		fetches = append(fetches, f)
	}
	return lo, hi, fetches
}

// segmentStreamer is an ObjectStore that reads a range into consecutive
// buffers as its bytes arrive (S3Store does), asking for each buffer only
// when its first byte is about to be read. Reading through it, the Reader
// gives every batch its own buffer (allocated, and zeroed, while the
// previous batches are in transit, and freed on its own once evicted),
// computes its CRC32C chunk by chunk just after each chunk was read, while
// it is in the CPU cache, and checks and decodes each batch of a coalesced
// GET as soon as its last byte is in. Contract: segments are read in
// order; alloc(i) returns a buffer of sizes[i] bytes; buffer[:filled] is
// final once progress(i, filled) is called; an error from progress ends
// the read and is returned.
type segmentStreamer interface {
	StreamSegments(ctx context.Context, key string, offset int64, sizes []int, alloc func(i int) []byte, progress func(i, filled int) error) error
}

// loadRun fetches batches lo..hi of a shard with one range GET and
// verifies, decodes and completes each batch as soon as its bytes are in
// (with a store that streams; otherwise once the whole range is). A run of
// every batch of the shard is fetched as the whole object: a few hundred
// bytes more (file header and footer), and servers can send a whole file
// without copying it (versitygw uses sendfile for whole objects but copies
// every range through a buffer, at about four times the server CPU). With
// an index of version 2 or later, whose schema was checked once, that GET
// is all; with a version 1 index the shard's footer is fetched (once per
// shard) at the same time, and checked before the first batch is decoded.
func (r *Reader) loadRun(ctx context.Context, shard, lo, hi int, fetches []*fetch) {
	si := &r.index.Shards[shard]
	bs := si.Batches
	obj := r.objectName(shard)
	var ferr error // set before fdone is closed
	fdone := make(chan struct{})
	if r.index.Version >= 2 {
		if err := r.checkSchema(shard); err != nil {
			// No batch of this dataset can be decoded: fetch nothing.
			for i := range fetches {
				r.completeFetch(shard, lo+i, fetches[i], nil, err)
			}
			return
		}
		close(fdone)
	} else {
		go func() {
			defer close(fdone)
			_, ferr = r.footer(ctx, shard)
		}()
	}
	whole := lo == 0 && hi == len(bs)-1
	off, end := bs[lo].Offset, bs[hi].Offset+bs[hi].Length
	if whole {
		off, end = 0, si.Size
	}
	next := lo        // first batch not completed yet
	footerOK := false // footer checked
	complete := func(b int, samples []Sample, err error) {
		r.completeFetch(shard, b, fetches[b-lo], samples, err)
	}
	// finish checks, decodes and completes batch next, whose bytes are data
	// and whose CRC32C, computed by the caller, is crc.
	finish := func(data []byte, crc uint32) error {
		if !footerOK {
			<-fdone
			if ferr != nil {
				return ferr
			}
			footerOK = true
		}
		k := batchKey{shard, next}
		err := r.checkSums(k, data, crc)
		var samples []Sample
		if err == nil {
			samples, err = r.decodeBatch(k, data, !r.opts.SkipImageCheck)
		}
		complete(next, samples, err)
		next++
		return nil
	}
	var err error
	if st, ok := r.store.(segmentStreamer); ok {
		// Segments: [the file header,] batches lo..hi[, the footer].
		first := 0 // segment of batch lo
		var sizes []int
		if whole {
			sizes = append(sizes, int(bs[0].Offset))
			first = 1
		}
		for b := lo; b <= hi; b++ {
			sizes = append(sizes, int(bs[b].Length))
		}
		if whole {
			sizes = append(sizes, int(si.Size-si.FooterOffset))
		}
		bufs := make([][]byte, len(sizes))
		var got int64 // bytes received
		segGot := 0   // of them, in the current segment
		var crc uint32
		crcTo := 0 // bytes of the current batch in crc
		alloc := func(i int) []byte {
			bufs[i] = make([]byte, sizes[i])
			segGot = 0
			return bufs[i]
		}
		progress := func(i, filled int) error {
			got += int64(filled - segGot)
			segGot = filled
			if b := lo + i - first; b < lo || b > hi {
				return nil // header or footer
			}
			crc = crc32.Update(crc, castagnoli, bufs[i][crcTo:filled])
			crcTo = filled
			if filled < sizes[i] {
				return nil
			}
			c := crc
			crc, crcTo = 0, 0
			data := bufs[i]
			bufs[i] = nil // the cache holds it now
			return finish(data, c)
		}
		err = st.StreamSegments(ctx, obj, off, sizes, alloc, progress)
		r.count(got)
	} else {
		var buf []byte
		buf, err = r.store.GetRange(ctx, obj, off, end-off)
		r.count(int64(len(buf)))
		if err == nil && int64(len(buf)) != end-off {
			err = fmt.Errorf("got %d bytes, want %d (truncated shard?)", len(buf), end-off)
		}
		for err == nil && next <= hi {
			data := buf[bs[next].Offset-off : bs[next].Offset+bs[next].Length-off]
			err = finish(data, crc32.Checksum(data, castagnoli))
		}
	}
	if err != nil && err != ferr {
		err = fmt.Errorf("object %s batches %d-%d: %w", obj, lo, hi, err)
	}
	if next <= hi && err == nil {
		err = fmt.Errorf("object %s batches %d-%d: range read ended early (internal error)", obj, lo, hi)
	}
	<-fdone
	for ; next <= hi; next++ {
		complete(next, nil, err)
	}
}

// completeFetch publishes the outcome of fetching batch b of shard: it
// leaves the in-flight set, enters the cache if it succeeded, and wakes its
// waiters.
func (r *Reader) completeFetch(shard, b int, f *fetch, samples []Sample, err error) {
	f.samples, f.err = samples, err
	k := batchKey{shard, b}
	r.mu.Lock()
	delete(r.inflight, k)
	if err == nil {
		r.cache.add(k, samples, r.index.Shards[shard].Batches[b].Length)
	}
	r.mu.Unlock()
	close(f.done)
}

// batch returns the decoded samples of one batch, fetching it (once, even
// when asked concurrently) if it is not cached.
func (r *Reader) batch(ctx context.Context, k batchKey) ([]Sample, error) {
	r.mu.Lock()
	if s, ok := r.cache.get(k); ok {
		r.mu.Unlock()
		return s, nil
	}
	if f, ok := r.inflight[k]; ok {
		r.mu.Unlock()
		select {
		case <-f.done:
			return f.samples, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if r.queuedK[k] {
		// Queued for prefetch but not started: fetch it now, with the
		// adjacent queued batches.
		// The run is read in the background, so that this call returns
		// as soon as its own batch is in.
		lo, _, fetches := r.claimRunLocked(k)
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.loadRun(ctx, k.shard, lo, lo+len(fetches)-1, fetches)
		}()
		f := fetches[k.batch-lo]
		select {
		case <-f.done:
			return f.samples, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &fetch{done: make(chan struct{})}
	r.inflight[k] = f
	r.mu.Unlock()

	f.samples, f.err = r.load(ctx, k)
	r.mu.Lock()
	delete(r.inflight, k)
	if f.err == nil {
		r.cache.add(k, f.samples, r.index.Shards[k.shard].Batches[k.batch].Length)
	}
	r.mu.Unlock()
	close(f.done)
	return f.samples, f.err
}

// load fetches, verifies and decodes one batch.
func (r *Reader) load(ctx context.Context, k batchKey) ([]Sample, error) {
	if r.index.Version >= 2 {
		if err := r.checkSchema(k.shard); err != nil {
			return nil, err
		}
	} else if _, err := r.footer(ctx, k.shard); err != nil {
		return nil, err
	}
	data, err := r.fetchBatch(ctx, k)
	if err != nil {
		return nil, err
	}
	return r.decodeBatch(k, data, !r.opts.SkipImageCheck)
}

// checkSchema checks (once per Reader) that the schema recorded in a
// version 2 index is the schema of its kind, which every batch is decoded
// with. The batches' checksums, also from the index, then tie each batch's
// bytes to that schema, so no shard footer is needed. The error names the
// index and the object about to be read.
func (r *Reader) checkSchema(shard int) error {
	r.schemaOnce.Do(func() {
		got, err := parseSchemaMessage(r.index.Schema)
		if err != nil {
			r.schemaErr = fmt.Errorf("field schema: %w", err)
			return
		}
		want, err := Schema(r.index.Kind)
		if err != nil {
			r.schemaErr = err
			return
		}
		if !got.Equal(want) || !got.Metadata().Equal(want.Metadata()) {
			r.schemaErr = fmt.Errorf("schema mismatch: kind %s is %v, the index's schema field holds %v", r.index.Kind, want, got)
		}
	})
	if r.schemaErr != nil {
		return fmt.Errorf("object %s (index %s): %w", r.objectName(shard), JoinKey(r.prefix, IndexName), r.schemaErr)
	}
	return nil
}

// where names a batch for error messages.
func (r *Reader) where(k batchKey) string {
	si := &r.index.Shards[k.shard]
	first := si.firstRow(k.batch)
	return fmt.Sprintf("object %s batch %d (rows %d-%d)", r.objectName(k.shard), k.batch, first, first+si.Batches[k.batch].Rows-1)
}

// fetchBatch gets a batch's bytes with one range GET and checks its sha256.
func (r *Reader) fetchBatch(ctx context.Context, k batchKey) ([]byte, error) {
	bi := r.index.Shards[k.shard].Batches[k.batch]
	data, err := r.store.GetRange(ctx, r.objectName(k.shard), bi.Offset, bi.Length)
	r.count(int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.where(k), err)
	}
	if int64(len(data)) != bi.Length {
		return nil, fmt.Errorf("%s: got %d bytes, want %d (truncated shard?)", r.where(k), len(data), bi.Length)
	}
	if err := r.checkBatch(k, data); err != nil {
		return nil, err
	}
	return data, nil
}

// checkBatch compares a batch's bytes with the checksums in the index.
func (r *Reader) checkBatch(k batchKey, data []byte) error {
	return r.checkSums(k, data, crc32.Checksum(data, castagnoli))
}

// checkSums compares a batch's CRC32C c, computed by the caller over data,
// (and, if asked, data's SHA256) with the index.
func (r *Reader) checkSums(k batchKey, data []byte, c uint32) error {
	bi := r.index.Shards[k.shard].Batches[k.batch]
	if c != bi.CRC32C {
		return Corrupt(r.objectName(k.shard), fmt.Errorf("%s: crc32c %08x does not match the index (%08x): corrupt shard", r.where(k), c, bi.CRC32C))
	}
	if r.opts.VerifySHA256 {
		if h := sha256.Sum256(data); hex.EncodeToString(h[:]) != bi.SHA256 {
			return Corrupt(r.objectName(k.shard), fmt.Errorf("%s: sha256 %x... does not match the index (%s...): corrupt shard", r.where(k), h[:8], bi.SHA256[:16]))
		}
	}
	return nil
}

// decodeBatch decodes a fetched batch with its kind's schema, without
// copying its bytes, and checks the row count and every sample. The caller
// has checked that the shard's schema is the kind's (checkSchema, or the
// footer for a version 1 index). The bytes passed their checksums, so a
// batch that does not decode is corrupt at ingest: its errors are
// *CorruptError.
func (r *Reader) decodeBatch(k batchKey, data []byte, checkImgs bool) ([]Sample, error) {
	s, err := r.decodeChecked(k, data, checkImgs)
	return s, Corrupt(r.objectName(k.shard), err)
}

func (r *Reader) decodeChecked(k batchKey, data []byte, checkImgs bool) ([]Sample, error) {
	si := &r.index.Shards[k.shard]
	bi := si.Batches[k.batch]
	obj := r.objectName(k.shard)
	first := si.firstRow(k.batch)
	sm, err := schemaMessage(r.index.Kind)
	if err != nil {
		return nil, err
	}
	smsg, err := splitMessage(sm)
	if err != nil {
		return nil, fmt.Errorf("internal error: schema message: %w", err)
	}
	bmsg, err := splitMessage(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.where(k), err)
	}
	want, _ := Schema(r.index.Kind)
	rd, err := ipc.NewReaderFromMessageReader(&sliceMessages{msgs: []*ipc.Message{smsg, bmsg}}, ipc.WithSchema(want), ipc.WithAllocator(goAlloc))
	if err != nil {
		return nil, fmt.Errorf("%s: decode: %w", r.where(k), err)
	}
	defer rd.Release()
	if !rd.Next() {
		err := rd.Err()
		if err == nil {
			err = fmt.Errorf("no record batch")
		}
		return nil, fmt.Errorf("%s: decode: %w", r.where(k), err)
	}
	rec := rd.RecordBatch()
	if rec.NumRows() != bi.Rows {
		return nil, fmt.Errorf("%s: %d rows, the index says %d", r.where(k), rec.NumRows(), bi.Rows)
	}
	samples := decodeRecord(r.index.Kind, rec)
	for i := range samples {
		if err := ValidateSample(r.index.Kind, &samples[i]); err != nil {
			return nil, fmt.Errorf("object %s row %d (id %q): %w", obj, first+int64(i), samples[i].ID, err)
		}
		if checkImgs {
			if err := checkImages(&samples[i]); err != nil {
				return nil, fmt.Errorf("object %s row %d (id %q): %w", obj, first+int64(i), samples[i].ID, err)
			}
		}
	}
	return samples, nil
}

func (r *Reader) count(n int64) {
	r.statsMu.Lock()
	r.gets++
	r.fetched += n
	r.statsMu.Unlock()
}

// footer returns (fetching once, even when asked concurrently) the footer
// bytes of a shard: one range GET from the end of the last batch to the end
// of the file. A failed fetch is not cached.
func (r *Reader) footer(ctx context.Context, shard int) ([]byte, error) {
	r.mu.Lock()
	f, ok := r.footers[shard]
	if !ok {
		f = &footerFetch{done: make(chan struct{})}
		r.footers[shard] = f
	}
	r.mu.Unlock()
	if ok {
		select {
		case <-f.done:
			return f.data, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.data, f.err = r.fetchFooter(ctx, shard)
	if f.err != nil {
		r.mu.Lock()
		delete(r.footers, shard)
		r.mu.Unlock()
	}
	close(f.done)
	return f.data, f.err
}

func (r *Reader) fetchFooter(ctx context.Context, shard int) ([]byte, error) {
	si := &r.index.Shards[shard]
	obj := r.objectName(shard)
	data, err := r.store.GetRange(ctx, obj, si.FooterOffset, si.Size-si.FooterOffset)
	r.count(int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("object %s: footer: %w", obj, err)
	}
	if len(data) < 10 || !bytes.Equal(data[len(data)-6:], []byte("ARROW1")) {
		return nil, fmt.Errorf("object %s: no Arrow file footer at [%d, %d) (truncated or not an Arrow IPC file)", obj, si.FooterOffset, si.Size)
	}
	// Check the footer once per shard: the schema is the kind's and it
	// lists as many record batches as the index. Batches are then decoded
	// straight from their fetched bytes.
	ra := &rangeReaderAt{obj: obj, size: si.Size, parts: []part{{si.FooterOffset, data}}}
	fr, err := ipc.NewFileReader(ra, ipc.WithFooterOffset(si.Size), ipc.WithAllocator(goAlloc))
	if err != nil {
		return nil, fmt.Errorf("object %s: footer: %w", obj, err)
	}
	defer fr.Close()
	want, _ := Schema(r.index.Kind)
	if !fr.Schema().Equal(want) {
		return nil, fmt.Errorf("object %s: schema mismatch: the index says kind %s (%v), the file has %v", obj, r.index.Kind, want, fr.Schema())
	}
	if fr.NumRecords() != len(si.Batches) {
		return nil, fmt.Errorf("object %s: footer lists %d record batches, the index %d", obj, fr.NumRecords(), len(si.Batches))
	}
	return data, nil
}

// checkImages decodes each image's header and compares it with the stored
// format and size.
func checkImages(s *Sample) error {
	check := func(what string, im *Image) error {
		cfg, format, err := image.DecodeConfig(&peekReader{b: im.Data})
		if err != nil {
			return fmt.Errorf("%s: undecodable image: %w", what, err)
		}
		if cfg.Width != im.Width || cfg.Height != im.Height {
			return fmt.Errorf("%s: image is %dx%d, stored size says %dx%d", what, cfg.Width, cfg.Height, im.Width, im.Height)
		}
		if format != im.Format {
			return fmt.Errorf("%s: image is %s, stored format says %s", what, format, im.Format)
		}
		return nil
	}
	if s.Image != nil {
		if err := check("image", s.Image); err != nil {
			return err
		}
	}
	for i := range s.Items {
		if s.Items[i].Image != nil {
			if err := check(fmt.Sprintf("item %d", i), s.Items[i].Image); err != nil {
				return err
			}
		}
	}
	for i := range s.Frames {
		if err := check(fmt.Sprintf("frame %d", i), &s.Frames[i]); err != nil {
			return err
		}
	}
	for i := range s.Images {
		if err := check(fmt.Sprintf("image %d", i), &s.Images[i]); err != nil {
			return err
		}
	}
	return nil
}

// peekReader reads a byte slice and can peek ahead in it. image.DecodeConfig
// reads through it as is, where it wraps a plain io.Reader in a fresh
// 4 KiB bufio.Reader (allocated and zeroed for every image).
type peekReader struct {
	b   []byte
	off int
}

func (p *peekReader) Read(q []byte) (int, error) {
	if p.off >= len(p.b) {
		return 0, io.EOF
	}
	n := copy(q, p.b[p.off:])
	p.off += n
	return n, nil
}

// Peek returns the next n bytes without advancing, or fewer with io.EOF at
// the end, as bufio.Reader.Peek does.
func (p *peekReader) Peek(n int) ([]byte, error) {
	rest := p.b[p.off:]
	if n > len(rest) {
		return rest, io.EOF
	}
	return rest[:n], nil
}

// rangeReaderAt serves the Arrow file reader from the byte ranges fetched
// for it (the footer and one batch); a read outside them is an error, so a
// footer that disagrees with the index is detected rather than causing
// extra requests.
type rangeReaderAt struct {
	obj   string
	size  int64
	parts []part
	pos   int64
}

type part struct {
	off  int64
	data []byte
}

func (r *rangeReaderAt) ReadAt(p []byte, off int64) (int, error) {
	for _, pt := range r.parts {
		if off >= pt.off && off+int64(len(p)) <= pt.off+int64(len(pt.data)) {
			return copy(p, pt.data[off-pt.off:]), nil
		}
	}
	return 0, fmt.Errorf("object %s: read [%d, %d) outside the ranges named by the index (footer and index disagree)", r.obj, off, off+int64(len(p)))
}

func (r *rangeReaderAt) Read(p []byte) (int, error) {
	n, err := r.ReadAt(p, r.pos)
	r.pos += int64(n)
	return n, err
}

func (r *rangeReaderAt) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		r.pos = off
	case io.SeekCurrent:
		r.pos += off
	case io.SeekEnd:
		r.pos = r.size + off
	}
	return r.pos, nil
}

// Stream yields the samples at a sequence of locations in order, keeping
// the batches of the samples ahead of the consumer fetched or in flight,
// up to a bound in bytes (ReaderOptions.AheadBytes) and optionally in
// samples.
type Stream struct {
	r     *Reader
	ctx   context.Context
	seq   func(i int64) (Loc, bool)
	ahead int64 // bound on samples scheduled beyond next; 0: none
	limit int64 // bound on the bytes of the window's batches
	win   window
	next  int64 // index of the next sample to return
	sched int64 // locations below this have been scheduled for prefetch
}

// Stream returns an iterator over the locations seq(0), seq(1), ... until
// seq reports false. It keeps the batches of the samples after the current
// one fetched or in flight ahead of the consumer: as many as fit in
// ReaderOptions.AheadBytes (counting each distinct batch once, by its
// stored size) and, if ahead > 0, at most ahead samples' worth.
func (r *Reader) Stream(ctx context.Context, seq func(i int64) (Loc, bool), ahead int) *Stream {
	return &Stream{r: r, ctx: ctx, seq: seq, ahead: int64(max(ahead, 0)), limit: r.opts.AheadBytes,
		win: window{refs: map[batchKey]int{}}}
}

// window counts, for each batch, the samples scheduled for prefetch and
// not yet returned, and the bytes of the batches counted at least once.
// Those batches are the ones the stream still needs from the cache or the
// store.
type window struct {
	refs  map[batchKey]int
	bytes int64
}

func (w *window) add(k batchKey, length int64) {
	if w.refs[k] == 0 {
		w.bytes += length
	}
	w.refs[k]++
}

// done counts one sample of batch k returned, and reports whether that
// was the window's last sample of k.
func (w *window) done(k batchKey, length int64) bool {
	switch n := w.refs[k]; n {
	case 0:
		return false
	case 1:
		delete(w.refs, k)
		w.bytes -= length
		return true
	default:
		w.refs[k] = n - 1
		return false
	}
}

// release tells the cache that a stream is done with batch k: it is the
// first to be evicted (before batches fetched ahead and not yet used).
func (r *Reader) release(k batchKey) {
	r.mu.Lock()
	r.cache.demote(k)
	r.mu.Unlock()
}

// batchOf returns the batch holding loc and its stored size.
func (r *Reader) batchOf(loc Loc) (batchKey, int64, bool) {
	if loc.Shard < 0 || loc.Shard >= len(r.index.Shards) {
		return batchKey{}, 0, false
	}
	si := &r.index.Shards[loc.Shard]
	b, _, ok := si.locate(loc.Row)
	if !ok {
		return batchKey{}, 0, false
	}
	return batchKey{loc.Shard, b}, si.Batches[b].Length, true
}

// Next returns the next sample and its location, or io.EOF at the end.
func (s *Stream) Next() (Sample, Loc, error) {
	loc, ok := s.seq(s.next)
	if !ok {
		return Sample{}, Loc{}, io.EOF
	}
	// Top the window up once it has drained by a quarter (or is empty), so
	// that batches are queued together and adjacent ones can share a
	// range GET. The next sample is always scheduled, whatever its size.
	roomB := s.win.bytes <= s.limit-s.limit/4
	roomN := s.ahead == 0 || s.sched <= s.next+s.ahead-s.ahead/4
	if s.sched <= s.next || roomB && roomN {
		var keys []batchKey // batches new to the window, in order of first need
		for s.ahead == 0 || s.sched <= s.next+s.ahead {
			l, ok := s.seq(s.sched)
			if !ok {
				break
			}
			if k, n, ok := s.r.batchOf(l); ok {
				if s.win.refs[k] == 0 {
					if s.win.bytes+n > s.limit && s.sched > s.next {
						break
					}
					keys = append(keys, k)
				}
				s.win.add(k, n)
			}
			s.sched++
		}
		s.r.prefetchKeys(s.ctx, keys)
	}
	smp, err := s.r.Get(s.ctx, loc.Shard, loc.Row)
	if err != nil {
		return Sample{}, loc, err
	}
	if k, n, ok := s.r.batchOf(loc); ok && s.win.done(k, n) {
		s.r.release(k)
	}
	s.next++
	return smp, loc, nil
}
