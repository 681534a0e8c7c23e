package hf

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

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
