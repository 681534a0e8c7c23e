package kernels

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"testing"
)

// stTensor is one tensor of a safetensors file (only the dtypes gen.py writes).
type stTensor struct {
	dtype string
	shape []int
	f32   []float32
	i32   []int32
	u16   []uint16
}

// readSafetensors parses a safetensors file: an 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets}}, then the data.
func readSafetensors(path string) (map[string]*stTensor, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseSafetensors(path, raw)
}

func parseSafetensors(path string, raw []byte) (map[string]*stTensor, error) {
	if len(raw) < 8 {
		return nil, fmt.Errorf("%s: %d bytes, too short for a header", path, len(raw))
	}
	n := binary.LittleEndian.Uint64(raw)
	if n > uint64(len(raw)-8) {
		return nil, fmt.Errorf("%s: header length %d exceeds the file (%d bytes)", path, n, len(raw))
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+n], &hdr); err != nil {
		return nil, fmt.Errorf("%s: header: %v", path, err)
	}
	data := raw[8+n:]
	out := map[string]*stTensor{}
	names := make([]string, 0, len(hdr))
	for k := range hdr {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == "__metadata__" {
			continue
		}
		var e struct {
			Dtype   string   `json:"dtype"`
			Shape   []int    `json:"shape"`
			Offsets []uint64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(hdr[name], &e); err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %v", path, name, err)
		}
		if len(e.Offsets) != 2 || e.Offsets[0] > e.Offsets[1] || e.Offsets[1] > uint64(len(data)) {
			return nil, fmt.Errorf("%s: tensor %q: data_offsets %v outside the %d data bytes", path, name, e.Offsets, len(data))
		}
		count := 1
		for _, d := range e.Shape {
			if d < 0 || (d > 0 && count > math.MaxInt32/d) {
				return nil, fmt.Errorf("%s: tensor %q: bad shape %v", path, name, e.Shape)
			}
			count *= d
		}
		b := data[e.Offsets[0]:e.Offsets[1]]
		t := &stTensor{dtype: e.Dtype, shape: e.Shape}
		size := map[string]int{"F32": 4, "I32": 4, "BF16": 2}[e.Dtype]
		if size == 0 {
			return nil, fmt.Errorf("%s: tensor %q: unsupported dtype %q", path, name, e.Dtype)
		}
		if len(b) != count*size {
			return nil, fmt.Errorf("%s: tensor %q: %d bytes for shape %v of %s", path, name, len(b), e.Shape, e.Dtype)
		}
		for i := 0; i < count; i++ {
			switch e.Dtype {
			case "F32":
				t.f32 = append(t.f32, math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
			case "I32":
				t.i32 = append(t.i32, int32(binary.LittleEndian.Uint32(b[4*i:])))
			case "BF16":
				t.u16 = append(t.u16, binary.LittleEndian.Uint16(b[2*i:]))
			}
		}
		out[name] = t
	}
	return out, nil
}

// FuzzSafetensors: the golden-file parser must reject any corrupt file with
// an error, never panic.
func FuzzSafetensors(f *testing.F) {
	if raw, err := os.ReadFile(goldenPath); err == nil && len(raw) > 4096 {
		n := binary.LittleEndian.Uint64(raw)
		f.Add(raw[:8+n+64])
	}
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, '{', '}'})
	f.Add([]byte(`xxxxxxxx{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, _ = parseSafetensors("fuzz", raw)
	})
}
