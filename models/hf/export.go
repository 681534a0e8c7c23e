package hf

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/safetensors"
)

// ExportOptions shape an exported directory.
type ExportOptions struct {
	// DType of the written tensors: F32 (default), BF16 or F16.
	DType safetensors.DType
	// ShardBytes bounds each safetensors shard (tensors are never split);
	// one shard is written as model.safetensors without an index. Default
	// 5 GB, as transformers' save_pretrained.
	ShardBytes int64
	// Files are written as they are after the weights: config.json, the
	// tokenizer files, generation_config.json. config.json is written last,
	// so a directory with a config holds all its weights.
	Files map[string][]byte
}

// ExportResult says what Export wrote.
type ExportResult struct {
	Shards  []string
	Tensors int
	Bytes   int64 // tensor bytes
}

// exportTensor is one checkpoint tensor to build from the parameters.
type exportTensor struct {
	name  string
	shape []int
	bytes int64
	e     Entry
}

// Export writes the parameters as a Hugging Face directory through the
// inverse of m: each entry's Loom parameters (concatenated for Split, the
// first one otherwise), Invert applied, shaped as HFShape when set. Shards
// are built one at a time, so memory stays at the model plus one shard.
func Export(ctx context.Context, sink Sink, m Mapping, p *nn.Params, opt ExportOptions) (*ExportResult, error) {
	if opt.DType == "" {
		opt.DType = safetensors.F32
	}
	switch opt.DType {
	case safetensors.F32, safetensors.BF16, safetensors.F16:
	default:
		return nil, fmt.Errorf("export: dtype %s: want F32, BF16 or F16", opt.DType)
	}
	if opt.ShardBytes <= 0 {
		opt.ShardBytes = 5_000_000_000
	}
	var ts []exportTensor
	seen := map[string]bool{}
	for _, e := range m.Entries {
		if e.NoExport {
			continue
		}
		if seen[e.HF] {
			return nil, fmt.Errorf("export %s: tensor %q is written by two entries", m.Arch, e.HF)
		}
		seen[e.HF] = true
		shape, n, err := exportShape(p, e)
		if err != nil {
			return nil, fmt.Errorf("export %s: tensor %q: %w", m.Arch, e.HF, err)
		}
		ts = append(ts, exportTensor{name: e.HF, shape: shape, bytes: int64(n * opt.DType.Size()), e: e})
	}
	// Group into shards in entry order (the model's order).
	var shards [][]exportTensor
	var cur []exportTensor
	var curBytes, total int64
	for _, t := range ts {
		if len(cur) > 0 && curBytes+t.bytes > opt.ShardBytes {
			shards = append(shards, cur)
			cur, curBytes = nil, 0
		}
		cur = append(cur, t)
		curBytes += t.bytes
		total += t.bytes
	}
	if len(cur) > 0 {
		shards = append(shards, cur)
	}
	res := &ExportResult{Tensors: len(ts), Bytes: total}
	weightMap := map[string]string{}
	// One shard buffer, reused: each tensor is encoded straight into it
	// from the parameters, so memory stays at the model plus one shard
	// (Sink.Put must not keep the bytes after it returns).
	var buf []byte
	for i, sh := range shards {
		name := SingleFile
		if len(shards) > 1 {
			name = fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		}
		sort.Slice(sh, func(a, b int) bool { return sh[a].name < sh[b].name })
		hs := make([]safetensors.TensorHeader, len(sh))
		size := int64(0)
		for k, t := range sh {
			hs[k] = safetensors.TensorHeader{Name: t.name, DType: opt.DType, Shape: t.shape}
			size += t.bytes
		}
		hdr, err := safetensors.EncodeHeader(hs, nil)
		if err != nil {
			return nil, fmt.Errorf("export %s: %s: %w", m.Arch, name, err)
		}
		n := int64(len(hdr)) + size
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		copy(buf, hdr)
		at := int64(len(hdr))
		for _, t := range sh {
			v, err := exportValues(p, t.e)
			if err != nil {
				return nil, fmt.Errorf("export %s: tensor %q: %w", m.Arch, t.name, err)
			}
			encode(opt.DType, v, buf[at:at+t.bytes])
			at += t.bytes
			weightMap[t.name] = name
		}
		if err := sink.Put(ctx, name, buf); err != nil {
			return nil, fmt.Errorf("export: %s/%s: %w", sink, name, err)
		}
		res.Shards = append(res.Shards, name)
	}
	if len(shards) > 1 {
		idx := struct {
			Metadata  map[string]int64  `json:"metadata"`
			WeightMap map[string]string `json:"weight_map"`
		}{map[string]int64{"total_size": total}, weightMap}
		b, err := json.MarshalIndent(idx, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := sink.Put(ctx, IndexFile, append(b, '\n')); err != nil {
			return nil, fmt.Errorf("export: %s/%s: %w", sink, IndexFile, err)
		}
	}
	names := make([]string, 0, len(opt.Files))
	for n := range opt.Files {
		if n != ConfigFile {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if _, ok := opt.Files[ConfigFile]; ok {
		names = append(names, ConfigFile)
	}
	for _, n := range names {
		if err := sink.Put(ctx, n, opt.Files[n]); err != nil {
			return nil, fmt.Errorf("export: %s/%s: %w", sink, n, err)
		}
	}
	return res, nil
}

func exportShape(p *nn.Params, e Entry) ([]int, int, error) {
	var shape []int
	for i, ln := range e.Loom {
		t := p.Get(ln)
		if t == nil {
			return nil, 0, fmt.Errorf("the model has no parameter %q", ln)
		}
		s := squeeze(t.Shape)
		switch {
		case i == 0:
			shape = slices.Clone(s)
		case e.Split:
			if len(s) != len(shape) || !slices.Equal(s[1:], shape[1:]) {
				return nil, 0, fmt.Errorf("%s %v does not concatenate with %v", ln, t.Shape, shape)
			}
			shape[0] += s[0]
		}
		if !e.Split {
			break
		}
	}
	if e.Invert != nil {
		s, _, err := e.Invert(shape, nil)
		if err != nil {
			return nil, 0, err
		}
		shape = s
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	if e.HFShape != nil {
		m := 1
		for _, d := range e.HFShape {
			m *= d
		}
		if m != n {
			return nil, 0, fmt.Errorf("HF shape %v holds %d values, the parameters %d", e.HFShape, m, n)
		}
		shape = slices.Clone(e.HFShape)
	}
	return shape, n, nil
}

func exportValues(p *nn.Params, e Entry) ([]float32, error) {
	var v []float32
	if e.Split {
		for _, ln := range e.Loom {
			v = append(v, p.Get(ln).Data...)
		}
	} else {
		v = p.Get(e.Loom[0]).Data
	}
	if e.Invert != nil {
		t := p.Get(e.Loom[0])
		shape := squeeze(t.Shape)
		if e.Split {
			shape = slices.Clone(shape)
			shape[0] = len(v) / max(1, numel(shape[1:]))
		}
		_, out, err := e.Invert(slices.Clone(shape), slices.Clone(v))
		if err != nil {
			return nil, err
		}
		v = out
	}
	return v, nil
}

func numel(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// encode writes values as dtype into out (little-endian).
func encode(d safetensors.DType, v []float32, out []byte) {
	switch d {
	case safetensors.BF16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(out[2*i:], safetensors.ToBF16(x))
		}
	case safetensors.F16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(out[2*i:], safetensors.ToF16(x))
		}
	default:
		for i, x := range v {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
		}
	}
}

func f16Tensor(name string, shape []int, v []float32) safetensors.Tensor {
	b := make([]byte, 2*len(v))
	encode(safetensors.F16, v, b)
	return safetensors.Tensor{Name: name, DType: safetensors.F16, Shape: slices.Clone(shape), Data: b}
}
