package shard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// WriterOptions configures a Writer.
type WriterOptions struct {
	Kind Kind
	// ShardBytes is the target shard size (default 256 MiB). A shard is cut
	// before the batch that would take it past the target, so shards end up
	// at most one batch larger than ShardBytes.
	ShardBytes int64
	// BatchBytes is the target record batch size (default 4 MiB): the unit
	// of one range GET and of checksum verification.
	BatchBytes int64
	// TempDir holds shard files while they are written (default os.TempDir()).
	TempDir string
	// OnShard, if set, is called after each shard is stored.
	OnShard func(ShardInfo)
}

// Writer turns samples into a dataset: Arrow IPC files of about ShardBytes
// made of record batches of about BatchBytes, uploaded to store under
// prefix, and the index, written by Close after every shard is stored.
// A Writer is not safe for concurrent use.
type Writer struct {
	ctx    context.Context
	store  ObjectStore
	prefix string
	opts   WriterOptions
	schema *arrow.Schema
	mem    memory.Allocator

	builder      *array.RecordBuilder
	pendingRows  int64
	pendingBytes int64

	cur     *shardFile // shard being written, nil between shards
	pending *upload    // shard being uploaded in the background, or nil
	nshards int        // shards cut so far (stored or being stored)
	shards  []ShardInfo
	rows    int64
	bytes   int64
	closed  bool
	written int64  // sample bytes accepted, for throughput reports
	header  []byte // the schema message every shard starts with (after the magic)
}

// upload is a finished shard file being stored while the next one is
// encoded.
type upload struct {
	f    *os.File
	info ShardInfo
	done chan error
}

type shardFile struct {
	f      *os.File
	cw     *countingWriter
	fw     *ipc.FileWriter
	starts []int64 // end offset after each batch
	rows   []int64
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// NewWriter starts a dataset under prefix in store.
func NewWriter(ctx context.Context, store ObjectStore, prefix string, opts WriterOptions) (*Writer, error) {
	schema, err := Schema(opts.Kind)
	if err != nil {
		return nil, err
	}
	if opts.ShardBytes <= 0 {
		opts.ShardBytes = 256 << 20
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 4 << 20
	}
	if opts.BatchBytes > 128<<20 {
		return nil, fmt.Errorf("batch size %d above 128 MiB (Arrow readers refuse bodies over 256 MiB)", opts.BatchBytes)
	}
	mem := memory.NewGoAllocator()
	return &Writer{ctx: ctx, store: store, prefix: prefix, opts: opts, schema: schema, mem: mem,
		builder: array.NewRecordBuilder(mem, schema)}, nil
}

// Add appends a sample. It fails if the sample does not fit the kind.
func (w *Writer) Add(s Sample) error {
	if w.closed {
		return fmt.Errorf("writer closed")
	}
	if err := ValidateSample(w.opts.Kind, &s); err != nil {
		return &sampleError{id: s.ID, err: err}
	}
	appendSample(w.opts.Kind, w.builder, &s)
	sz := sampleBytes(&s)
	w.pendingRows++
	w.pendingBytes += sz
	w.written += sz
	if w.pendingBytes >= w.opts.BatchBytes {
		return w.flushBatch()
	}
	return nil
}

// Rows returns the number of samples added so far.
func (w *Writer) Rows() int64 { return w.rows + w.pendingRows }

// BytesAdded returns the estimated sample bytes added so far.
func (w *Writer) BytesAdded() int64 { return w.written }

func (w *Writer) flushBatch() error {
	if w.pendingRows == 0 {
		return nil
	}
	if w.cur != nil && w.cur.cw.n+w.pendingBytes > w.opts.ShardBytes {
		if err := w.finishShard(); err != nil {
			return err
		}
	}
	if w.cur == nil {
		f, err := os.CreateTemp(w.opts.TempDir, "loom-shard-*.arrow")
		if err != nil {
			return fmt.Errorf("shard temp file: %w", err)
		}
		cw := &countingWriter{w: f}
		fw, err := ipc.NewFileWriter(cw, ipc.WithSchema(w.schema), ipc.WithAllocator(w.mem))
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			return fmt.Errorf("shard writer: %w", err)
		}
		w.cur = &shardFile{f: f, cw: cw, fw: fw}
	}
	rec := w.builder.NewRecordBatch()
	defer rec.Release()
	if err := w.cur.fw.Write(rec); err != nil {
		return fmt.Errorf("write record batch to %s: %w", w.cur.f.Name(), err)
	}
	w.cur.starts = append(w.cur.starts, w.cur.cw.n)
	w.cur.rows = append(w.cur.rows, w.pendingRows)
	w.rows += w.pendingRows
	w.pendingRows, w.pendingBytes = 0, 0
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// headerLen returns the length of the IPC file header (magic, padding and
// the schema message) that precedes the first record batch.
func headerLen(schema *arrow.Schema) (int64, error) {
	var buf bytes.Buffer
	sw := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	if err := sw.Close(); err != nil {
		return 0, err
	}
	// The stream is the schema message followed by the 8-byte end-of-stream
	// marker; the file puts the 8-byte magic ("ARROW1" + 2 padding) first.
	return 8 + int64(buf.Len()) - 8, nil
}

func (w *Writer) finishShard() error {
	c := w.cur
	w.cur = nil
	handedOff := false
	defer func() {
		if !handedOff {
			c.f.Close()
			os.Remove(c.f.Name())
		}
	}()
	if err := c.fw.Close(); err != nil {
		return fmt.Errorf("close shard file %s: %w", c.f.Name(), err)
	}
	size := c.cw.n
	hl, err := headerLen(w.schema)
	if err != nil {
		return err
	}
	info := ShardInfo{
		Key:          fmt.Sprintf("shard-%05d.arrow", w.nshards),
		Size:         size,
		FooterOffset: c.starts[len(c.starts)-1],
	}
	// Hash the whole file and each batch, and check that every batch range
	// starts with an IPC message (continuation marker), which catches any
	// disagreement between our offsets and the footer's.
	whole := sha256.New()
	start := hl
	if _, err := c.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	hdr := make([]byte, hl)
	if _, err := io.ReadFull(c.f, hdr); err != nil {
		return fmt.Errorf("read back %s: %w", c.f.Name(), err)
	}
	if len(hdr) < 8 || !bytes.HasPrefix(hdr, []byte("ARROW1")) {
		return fmt.Errorf("shard %s: no Arrow file magic", info.Key)
	}
	if w.header == nil {
		w.header = bytes.Clone(hdr[8:])
	} else if !bytes.Equal(w.header, hdr[8:]) {
		return fmt.Errorf("internal error: shard %s starts with another schema message than the first shard", info.Key)
	}
	whole.Write(hdr)
	for i, end := range c.starts {
		buf := make([]byte, end-start)
		if _, err := io.ReadFull(c.f, buf); err != nil {
			return fmt.Errorf("read back %s: %w", c.f.Name(), err)
		}
		if len(buf) < 8 || binary.LittleEndian.Uint32(buf) != 0xFFFFFFFF {
			return fmt.Errorf("shard %s: batch %d at offset %d does not start with an IPC message", info.Key, i, start)
		}
		whole.Write(buf)
		h := sha256.Sum256(buf)
		info.Batches = append(info.Batches, BatchInfo{Offset: start, Length: end - start, Rows: c.rows[i],
			SHA256: hex.EncodeToString(h[:]), CRC32C: crc32.Checksum(buf, castagnoli)})
		info.Rows += c.rows[i]
		start = end
	}
	if _, err := io.Copy(whole, c.f); err != nil {
		return fmt.Errorf("read back %s: %w", c.f.Name(), err)
	}
	info.SHA256 = hex.EncodeToString(whole.Sum(nil))
	w.nshards++
	if _, err := c.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	// At most one upload runs while the next shard is encoded.
	if err := w.waitUpload(); err != nil {
		return err
	}
	up := &upload{f: c.f, info: info, done: make(chan error, 1)}
	handedOff = true
	w.pending = up
	go func() { up.done <- w.store.Put(w.ctx, JoinKey(w.prefix, info.Key), up.f, size) }()
	return nil
}

// waitUpload waits for the background upload, if any, and records its
// shard in the index once it is stored.
func (w *Writer) waitUpload() error {
	up := w.pending
	if up == nil {
		return nil
	}
	w.pending = nil
	err := <-up.done
	up.f.Close()
	os.Remove(up.f.Name())
	if err != nil {
		return fmt.Errorf("upload shard %s: %w", up.info.Key, err)
	}
	w.shards = append(w.shards, up.info)
	w.bytes += up.info.Size
	if w.opts.OnShard != nil {
		w.opts.OnShard(up.info)
	}
	return nil
}

// Close flushes the last batch and shard and then writes the index. The
// dataset becomes visible only when Close succeeds.
func (w *Writer) Close() (*Index, error) {
	if w.closed {
		return nil, fmt.Errorf("writer already closed")
	}
	w.closed = true
	defer w.builder.Release()
	if err := w.flushBatch(); err != nil {
		w.abortShard()
		w.abortUpload()
		return nil, err
	}
	if w.cur != nil {
		if err := w.finishShard(); err != nil {
			w.abortUpload()
			return nil, err
		}
	}
	if err := w.waitUpload(); err != nil {
		return nil, err
	}
	if len(w.shards) == 0 {
		return nil, fmt.Errorf("dataset %s: no samples written", w.prefix)
	}
	ix := &Index{Format: IndexFormat, Version: IndexVersion, Kind: w.opts.Kind, SchemaVersion: SchemaVersion,
		Schema: w.header, Rows: w.rows, Bytes: w.bytes, Shards: w.shards}
	if err := ix.Validate(); err != nil {
		return nil, fmt.Errorf("internal error: written index invalid: %w", err)
	}
	data, err := ix.Marshal()
	if err != nil {
		return nil, err
	}
	key := JoinKey(w.prefix, IndexName)
	if err := w.store.Put(w.ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		return nil, fmt.Errorf("write index: %w", err)
	}
	return ix, nil
}

// Abort drops what was written locally, after waiting for an upload in
// progress. Shards already uploaded stay in the store, unreferenced (no
// index refers to them).
func (w *Writer) Abort() {
	if !w.closed {
		w.closed = true
		w.builder.Release()
	}
	w.abortShard()
	w.abortUpload()
}

func (w *Writer) abortUpload() {
	if w.pending != nil {
		_ = w.waitUpload()
	}
}

func (w *Writer) abortShard() {
	if w.cur != nil {
		w.cur.f.Close()
		os.Remove(w.cur.f.Name())
		w.cur = nil
	}
}

// sampleError is a sample that does not fit the dataset's kind.
type sampleError struct {
	id  string
	err error
}

func (e *sampleError) Error() string { return fmt.Sprintf("sample %q: %v", e.id, e.err) }
func (e *sampleError) Unwrap() error { return e.err }
