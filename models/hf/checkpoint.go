package hf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/safetensors"
)

// File names of a Hugging Face model directory.
const (
	ConfigFile = "config.json"
	SingleFile = "model.safetensors"
	IndexFile  = "model.safetensors.index.json"
)

// TensorInfo locates one tensor of a checkpoint.
type TensorInfo struct {
	Name  string
	File  string // shard file name within the directory
	DType safetensors.DType
	Shape []int
	Off   int64 // absolute byte offset of the data in File
	Bytes int64
}

// Numel is the number of elements.
func (t TensorInfo) Numel() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Checkpoint is an opened model directory: its config.json and the
// headers of its safetensors files (one file, or the shards an index
// lists). No tensor data is read until Float32 asks for it.
type Checkpoint struct {
	src     Source
	config  []byte
	tensors map[string]TensorInfo
	files   []string
	meta    map[string]map[string]string // file -> __metadata__
}

// Open reads src's config.json (absent is allowed: Config returns nil) and
// the header of model.safetensors, or of every shard that
// model.safetensors.index.json lists, checking that each tensor the index
// names is in the shard it says. Errors name the file and the tensor.
func Open(ctx context.Context, src Source) (*Checkpoint, error) {
	c := &Checkpoint{src: src, tensors: map[string]TensorInfo{}, meta: map[string]map[string]string{}}
	ok, err := exists(ctx, src, ConfigFile)
	if err != nil {
		return nil, err
	}
	if ok {
		if c.config, err = readFile(ctx, src, ConfigFile); err != nil {
			return nil, err
		}
		if !json.Valid(c.config) {
			return nil, fmt.Errorf("%s/%s: not valid JSON", src, ConfigFile)
		}
	}
	var weightMap map[string]string
	if ok, err := exists(ctx, src, IndexFile); err != nil {
		return nil, err
	} else if ok {
		b, err := readFile(ctx, src, IndexFile)
		if err != nil {
			return nil, err
		}
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(b, &idx); err != nil {
			return nil, fmt.Errorf("%s/%s: %w", src, IndexFile, err)
		}
		if len(idx.WeightMap) == 0 {
			return nil, fmt.Errorf("%s/%s: weight_map is empty", src, IndexFile)
		}
		weightMap = idx.WeightMap
		seen := map[string]bool{}
		for _, f := range idx.WeightMap {
			if !seen[f] {
				seen[f] = true
				c.files = append(c.files, f)
			}
		}
		sort.Strings(c.files)
	} else {
		if ok, err := exists(ctx, src, SingleFile); err != nil {
			return nil, err
		} else if !ok {
			return nil, fmt.Errorf("%s: neither %s nor %s", src, SingleFile, IndexFile)
		}
		c.files = []string{SingleFile}
	}
	for _, f := range c.files {
		if strings.Contains(f, "/") || strings.Contains(f, "..") {
			return nil, fmt.Errorf("%s/%s: shard name %q must be a file in the directory", src, IndexFile, f)
		}
		if err := c.readHeader(ctx, f); err != nil {
			return nil, err
		}
	}
	for name, f := range weightMap {
		t, ok := c.tensors[name]
		if !ok {
			return nil, fmt.Errorf("%s/%s: tensor %q is listed in %s but %s does not hold it", src, f, name, IndexFile, f)
		}
		if t.File != f {
			return nil, fmt.Errorf("%s/%s: tensor %q: the index puts it in %s", src, t.File, name, f)
		}
	}
	if weightMap != nil && len(weightMap) != len(c.tensors) {
		for name, t := range c.tensors {
			if _, ok := weightMap[name]; !ok {
				return nil, fmt.Errorf("%s/%s: tensor %q is not listed in %s", src, t.File, name, IndexFile)
			}
		}
	}
	return c, nil
}

func (c *Checkpoint) readHeader(ctx context.Context, f string) error {
	size, err := c.src.Size(ctx, f)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", c.src, f, err)
	}
	first, err := c.src.ReadRange(ctx, f, 0, min(8, size))
	if err != nil {
		return fmt.Errorf("%s/%s: %w", c.src, f, err)
	}
	n, err := safetensors.HeaderLen(first, size)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", c.src, f, err)
	}
	hdr, err := c.src.ReadRange(ctx, f, 8, n)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", c.src, f, err)
	}
	h, err := safetensors.ParseHeader(hdr, size-8-n)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", c.src, f, err)
	}
	c.meta[f] = h.Metadata
	for _, in := range h.Tensors {
		if old, dup := c.tensors[in.Name]; dup {
			return fmt.Errorf("%s/%s: tensor %q is also in %s", c.src, f, in.Name, old.File)
		}
		c.tensors[in.Name] = TensorInfo{Name: in.Name, File: f, DType: in.DType, Shape: in.Shape,
			Off: 8 + n + in.Offsets[0], Bytes: in.Offsets[1] - in.Offsets[0]}
	}
	return nil
}

// Source is where the checkpoint was opened.
func (c *Checkpoint) Source() Source { return c.src }

// Config returns the bytes of config.json, or nil when there is none.
func (c *Checkpoint) Config() []byte { return c.config }

// Metadata returns the __metadata__ of one of the checkpoint's files.
func (c *Checkpoint) Metadata(file string) map[string]string { return c.meta[file] }

// Files returns the safetensors file names, sorted.
func (c *Checkpoint) Files() []string { return append([]string(nil), c.files...) }

// Info describes the named tensor.
func (c *Checkpoint) Info(name string) (TensorInfo, bool) {
	t, ok := c.tensors[name]
	return t, ok
}

// Tensors returns every tensor, in file then offset order (the order
// that reads each file front to back).
func (c *Checkpoint) Tensors() []TensorInfo {
	out := make([]TensorInfo, 0, len(c.tensors))
	for _, t := range c.tensors {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		return out[i].Off < out[j].Off
	})
	return out
}

// Float32 reads one tensor with a single range read and converts it to
// float32 (F32, F16, BF16 and F64 are accepted).
func (c *Checkpoint) Float32(ctx context.Context, name string) ([]float32, error) {
	t, ok := c.tensors[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", c.src, name)
	}
	return c.read(ctx, t, nil)
}

// read reads t into out (allocated when nil or too small).
func (c *Checkpoint) read(ctx context.Context, t TensorInfo, out []float32) ([]float32, error) {
	switch t.DType {
	case safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F64:
	default:
		return nil, fmt.Errorf("%s/%s: tensor %q has dtype %s; want F32, F16, BF16 or F64", c.src, t.File, t.Name, t.DType)
	}
	b, err := c.src.ReadRange(ctx, t.File, t.Off, t.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: tensor %q: %w", c.src, t.File, t.Name, err)
	}
	n := t.Numel()
	if cap(out) < n {
		out = make([]float32, n)
	}
	out = out[:n]
	if err := safetensors.Decode(t.DType, b, out); err != nil {
		return nil, fmt.Errorf("%s/%s: tensor %q: %w", c.src, t.File, t.Name, err)
	}
	return out, nil
}

// RangeReaderInto is an optional interface of a Source: ReadRangeInto
// fills buf with len(buf) bytes of the named file from offset off. Load
// uses it when the Source has it, so that its read buffers are reused
// instead of allocated per read (Go's collector lets garbage grow to the
// size of the live heap, which for a loaded model is the model itself).
type RangeReaderInto interface {
	ReadRangeInto(ctx context.Context, name string, off int64, buf []byte) error
}

// ReadRangeInto implements RangeReaderInto.
func (d Dir) ReadRangeInto(_ context.Context, name string, off int64, buf []byte) error {
	f, err := os.Open(filepath.Join(string(d), name))
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.ReadAt(buf, off); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: %d bytes at %d run past the end of the file", f.Name(), len(buf), off)
		}
		return err
	}
	return nil
}

// loadOptions tune how Load reads.
type loadOptions struct {
	// fetchers is the number of range reads in flight; each converts its
	// bytes into the parameters as soon as they arrive, so decoding runs
	// on as many goroutines.
	fetchers int
	// chunk bounds one range read in bytes: a large tensor is read in
	// pieces so that its decoding overlaps the transfer of the rest.
	chunk int64
}

// defaultLoad holds at most 4 × 16 MiB of checkpoint bytes besides the
// model (plus, for an entry with a Convert, that one tensor as float32).
var defaultLoad = loadOptions{fetchers: 4, chunk: 16 << 20}

// loadItem is one plan item being loaded.
type loadItem struct {
	it   *PlanItem
	conv func(shape []int, v []float32) ([]int, []float32, error)
	segs []loadSeg
	buf  []float32 // Convert: the whole tensor, decoded
	left atomic.Int64
}

// loadSeg is a run of a tensor's elements [start, start+len(dst[0])) and
// the parameter slices it is copied into (several for a tensor that
// seeds several parameters; one per part for Split).
type loadSeg struct {
	start int
	dst   [][]float32
}

// place copies v, elements [at, at+len(v)) of the tensor, into the
// segments it overlaps.
func (li *loadItem) place(at int, v []float32) {
	for _, s := range li.segs {
		lo, hi := max(at, s.start), min(at+len(v), s.start+len(s.dst[0]))
		if lo >= hi {
			continue
		}
		for _, d := range s.dst {
			copy(d[lo-s.start:hi-s.start], v[lo-at:hi-at])
		}
	}
}

// loadChunk is one range read: elements [first, first+n) of an item.
type loadChunk struct {
	li       *loadItem
	first, n int
}

// load streams the plan's tensors into p with o.fetchers range reads in
// flight, in file order. Each read is decoded straight into the
// parameters (or, for an entry with a Convert, into that tensor's buffer,
// converted when its last piece is in). At most one Convert buffer is
// held at a time. The first error cancels the reads still in flight.
func (c *Checkpoint) load(ctx context.Context, pl *Plan, m Mapping, p *nn.Params, o loadOptions) error {
	for _, it := range pl.Items {
		if err := checkDType(c, it.Tensor); err != nil {
			return err
		}
	}
	o.fetchers = max(o.fetchers, 1)
	o.chunk = max(o.chunk, 8)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	into, _ := c.src.(RangeReaderInto)
	var (
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	convSlot := make(chan struct{}, 1)
	chunks := make(chan loadChunk)
	var wg sync.WaitGroup
	for w := 0; w < o.fetchers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var raw []byte
			for ch := range chunks {
				if ctx.Err() != nil {
					continue
				}
				var err error
				if raw, err = c.loadChunk(ctx, ch, into, raw, convSlot); err != nil {
					fail(err)
				}
			}
		}()
	}
dispatch:
	for i := range pl.Items {
		it := &pl.Items[i]
		e := m.Entries[it.entry]
		li := &loadItem{it: it, conv: e.Convert}
		n := it.Tensor.Numel()
		if it.Split {
			at := 0
			for _, ln := range it.Loom {
				d := p.Get(ln).Data
				li.segs = append(li.segs, loadSeg{start: at, dst: [][]float32{d}})
				at += len(d)
			}
		} else {
			s := loadSeg{}
			for _, ln := range it.Loom {
				s.dst = append(s.dst, p.Get(ln).Data[:n]) // PadRows: the rows the checkpoint has
			}
			li.segs = []loadSeg{s}
		}
		if li.conv != nil {
			select {
			case convSlot <- struct{}{}:
			case <-ctx.Done():
				break dispatch
			}
			li.buf = make([]float32, n)
		}
		per := max(1, int(o.chunk/int64(it.Tensor.DType.Size())))
		count := max(1, (n+per-1)/per)
		li.left.Store(int64(count))
		for k := 0; k < count; k++ {
			ch := loadChunk{li: li, first: k * per, n: min(per, n-k*per)}
			select {
			case chunks <- ch:
			case <-ctx.Done():
				break dispatch
			}
		}
	}
	close(chunks)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// loadChunk reads and places one chunk; raw is the worker's reusable
// buffer (when the Source reads into buffers), returned grown as needed.
func (c *Checkpoint) loadChunk(ctx context.Context, ch loadChunk, into RangeReaderInto, raw []byte, convSlot chan struct{}) ([]byte, error) {
	li, t := ch.li, ch.li.it.Tensor
	es := int64(t.DType.Size())
	off, nb := t.Off+int64(ch.first)*es, int64(ch.n)*es
	wrap := func(err error) error { return fmt.Errorf("%s/%s: tensor %q: %w", c.src, t.File, t.Name, err) }
	if nb > 0 {
		var b []byte
		if into != nil {
			if int64(cap(raw)) < nb {
				raw = make([]byte, nb)
			}
			b = raw[:nb]
			if err := into.ReadRangeInto(ctx, t.File, off, b); err != nil {
				return raw, wrap(err)
			}
		} else {
			var err error
			if b, err = c.src.ReadRange(ctx, t.File, off, nb); err != nil {
				return raw, wrap(err)
			}
		}
		if li.conv != nil {
			if err := decode(t.DType, b, li.buf[ch.first:ch.first+ch.n]); err != nil {
				return raw, wrap(err)
			}
		} else if err := li.decodeDirect(t.DType, ch.first, b); err != nil {
			return raw, wrap(err)
		}
	}
	if li.left.Add(-1) > 0 || li.conv == nil {
		return raw, nil
	}
	defer func() { <-convSlot }()
	_, v, err := li.conv(slices.Clone(t.Shape), li.buf)
	li.buf = nil
	if err != nil {
		return raw, wrap(err)
	}
	li.place(0, v)
	return raw, nil
}

// decodeDirect decodes b, elements from at, into the parameters: into the
// first slice of each segment it overlaps, copied to the others.
func (li *loadItem) decodeDirect(dt safetensors.DType, at int, b []byte) error {
	es := dt.Size()
	n := len(b) / es
	for _, s := range li.segs {
		lo, hi := max(at, s.start), min(at+n, s.start+len(s.dst[0]))
		if lo >= hi {
			continue
		}
		d0 := s.dst[0][lo-s.start : hi-s.start]
		if err := decode(dt, b[(lo-at)*es:(hi-at)*es], d0); err != nil {
			return err
		}
		for _, d := range s.dst[1:] {
			copy(d[lo-s.start:hi-s.start], d0)
		}
	}
	return nil
}

func checkDType(c *Checkpoint, t TensorInfo) error {
	switch t.DType {
	case safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F64:
		return nil
	}
	return fmt.Errorf("%s/%s: tensor %q has dtype %s; want F32, F16, BF16 or F64", c.src, t.File, t.Name, t.DType)
}

// littleEndian: the machine's float32 bits are laid out as safetensors'.
var littleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

// decode is safetensors.Decode with fast paths for F32 (a copy) and BF16
// (a shift of each 16 bits into the top of a float32, four at a time) on
// little-endian machines; the results are bit-identical.
func decode(dt safetensors.DType, b []byte, out []float32) error {
	n := len(out)
	if !littleEndian || n == 0 || len(b) != n*dt.Size() {
		return safetensors.Decode(dt, b, out)
	}
	switch dt {
	case safetensors.F32:
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), len(b)), b)
		return nil
	case safetensors.BF16:
		u := unsafe.Slice((*uint32)(unsafe.Pointer(&out[0])), n)
		i := 0
		if uintptr(unsafe.Pointer(&b[0]))%8 == 0 && uintptr(unsafe.Pointer(&out[0]))%8 == 0 {
			// Four values per 8-byte load, two per 8-byte store.
			in := unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), n/4)
			o := unsafe.Slice((*uint64)(unsafe.Pointer(&out[0])), n/2)
			o = o[:2*len(in)]
			for k, x := range in {
				o[2*k] = (x&0xffff)<<16 | (x&0xffff0000)<<32
				o[2*k+1] = (x>>32&0xffff)<<16 | (x>>32&0xffff0000)<<32
			}
			i = 4 * len(in)
		}
		b = b[:2*n]
		for ; i < n; i++ {
			u[i] = uint32(b[2*i])<<16 | uint32(b[2*i+1])<<24
		}
		return nil
	}
	return safetensors.Decode(dt, b, out)
}
