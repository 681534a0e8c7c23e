package safetensors

import (
	"bytes"
	"encoding/binary"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/loom_written.safetensors")

func goldenTensors() []Tensor {
	return []Tensor{
		F32Tensor("proj.weight", []int{2, 3}, []float32{0, 1, 2, 3, 4, 5}),
		BF16Tensor("proj.bias", []int{2}, []float32{1.5, -0.25}),
		F32Tensor("scale", []int{}, []float32{0.07}),
		F32Tensor("empty", []int{0, 4}, nil),
	}
}

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, goldenTensors(), map[string]string{"step": "7"}); err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint64(buf.Bytes()); n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	f, err := Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if f.Metadata["format"] != "pt" || f.Metadata["step"] != "7" {
		t.Errorf("Metadata = %v, want format=pt step=7", f.Metadata)
	}
	if got, want := f.Names(), []string{"proj.weight", "proj.bias", "scale", "empty"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	for _, tc := range []struct {
		name  string
		shape []int
		want  []float32
	}{
		{"proj.weight", []int{2, 3}, []float32{0, 1, 2, 3, 4, 5}},
		{"proj.bias", []int{2}, []float32{1.5, -0.25}},
		{"scale", []int{}, []float32{0.07}},
		{"empty", []int{0, 4}, []float32{}},
	} {
		got, err := f.Float32(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		in, _ := f.Info(tc.name)
		if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(in.Shape, tc.shape) {
			t.Errorf("Float32(%q) = %v shape %v, want %v shape %v", tc.name, got, in.Shape, tc.want, tc.shape)
		}
	}
}

func TestBF16Rounding(t *testing.T) {
	tests := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{-2, 0xc000},
		{float32(math.Inf(1)), 0x7f80},
		// 1 + 2^-8 is exactly halfway between 1 and 1+2^-7: ties to even (1).
		{1 + 1.0/256, 0x3f80},
		// 1 + 3·2^-8 is halfway between 1+2^-7 and 1+2^-6: ties to even (1+2^-6).
		{1 + 3.0/256, 0x3f82},
		{1 + 1.0/256 + 1.0/65536, 0x3f81},
	}
	for _, tc := range tests {
		if got := ToBF16(tc.in); got != tc.want {
			t.Errorf("ToBF16(%v) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
	if v := FromBF16(ToBF16(float32(math.NaN()))); v == v {
		t.Errorf("ToBF16(NaN) widened to %v, want NaN", v)
	}
}

func TestFromF16(t *testing.T) {
	tests := []struct {
		in   uint16
		want float32
	}{
		{0x3c00, 1}, {0xc000, -2}, {0x3555, 0.333251953125}, {0x0001, float32(math.Ldexp(1, -24))},
		{0x7c00, float32(math.Inf(1))}, {0x8000, float32(math.Copysign(0, -1))}, {0x7bff, 65504},
	}
	for _, tc := range tests {
		if got := FromF16(tc.in); got != tc.want || math.Signbit(float64(got)) != math.Signbit(float64(tc.want)) {
			t.Errorf("FromF16(%#04x) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestGoldenLoomWritten pins the bytes Write produces. The committed file
// was read back by PyTorch with testdata/check_golden.py (torch.frombuffer),
// so keeping these bytes keeps PyTorch-readability.
func TestGoldenLoomWritten(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, goldenTensors(), map[string]string{"step": "7"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "loom_written.safetensors")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("Write output differs from %s (run with -update only if the change is intended, then re-run testdata/check_golden.py)", path)
	}
}

// TestGoldenTorchWritten reads a file that testdata/make_golden.py wrote with
// PyTorch 1.13 tensors (struct + json, the format written by hand).
func TestGoldenTorchWritten(t *testing.T) {
	f, err := ReadFile(filepath.Join("testdata", "torch_written.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata %v lacks format=pt", f.Metadata)
	}
	want := map[string][]float32{
		"layer.weight": {0, 0.5, 1, 1.5, 2, 2.5},                         // torch.arange(6)/2, F32
		"layer.bias":   {FromBF16(ToBF16(0.1)), FromBF16(ToBF16(-3.14))}, // torch .bfloat16() rounds as ToBF16
		"half":         {0.333251953125, -65504, 0},                      // float16
		"double":       {1.25},
	}
	for name, w := range want {
		got, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("Float32(%q) = %v, want %v", name, got, w)
		}
	}
	in, _ := f.Info("layer.weight")
	if !reflect.DeepEqual(in.Shape, []int{2, 3}) {
		t.Errorf("layer.weight shape %v, want [2 3]", in.Shape)
	}
	raw, _ := f.Raw("ids")
	if in, _ := f.Info("ids"); in.DType != I64 || len(raw) != 24 || binary.LittleEndian.Uint64(raw[16:]) != 9 {
		t.Errorf("ids: dtype %s raw %v, want I64 [7 8 9]", in.DType, raw)
	}
	if _, err := f.Float32("ids"); err == nil || !strings.Contains(err.Error(), `"ids"`) {
		t.Errorf("Float32(ids) error = %v, want one naming the I64 tensor", err)
	}
}

func header(s string) []byte {
	var b bytes.Buffer
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
	b.Write(n[:])
	b.WriteString(s)
	return b.Bytes()
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"short", []byte{1, 2}, "too short"},
		{"header past end", header(`{}`)[:9], "runs past the end"},
		{"not json", header(`{"a":`), "tensor \"a\""},
		{"not object", header(`[]`), "not a JSON object"},
		{"bad dtype", append(header(`{"w":{"dtype":"X9","shape":[1],"data_offsets":[0,4]}}`), 0, 0, 0, 0), `tensor "w": unknown dtype`},
		{"missing shape", header(`{"w":{"dtype":"F32","data_offsets":[0,0]}}`), `tensor "w": missing shape`},
		{"size mismatch", append(header(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`), 0, 0, 0, 0), `tensor "w": data_offsets [0 4] hold 4 bytes`},
		{"hole", append(header(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`), 0, 0), `tensor "w": data_offsets [1 2] leave a hole`},
		{"overlap", append(header(`{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"v":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`), 0, 0), `overlap`},
		{"trailing data", append(header(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`), 0, 0), "cover 1 bytes of data but the file holds 2"},
		{"duplicate", append(header(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`), 0, 0), `tensor "w" appears twice`},
		{"bad metadata", header(`{"__metadata__":{"a":1}}`), "__metadata__"},
		{"negative dim", header(`{"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}`), "negative dimension"},
		{"after object", header(`{} x`), "after the JSON object"},
	}
	for _, tc := range tests {
		_, err := Parse(tc.file)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Parse(%q) error = %v, want one containing %q", tc.name, tc.file, err, tc.want)
		}
	}
}

func TestWriteErrors(t *testing.T) {
	tests := []struct {
		tensors []Tensor
		want    string
	}{
		{[]Tensor{F32Tensor("a", []int{1}, []float32{1}), F32Tensor("a", []int{1}, []float32{1})}, `"a" written twice`},
		{[]Tensor{{Name: "b", DType: F32, Shape: []int{2}, Data: make([]byte, 4)}}, `"b": 4 bytes of data`},
		{[]Tensor{{Name: "c", DType: "F7", Shape: []int{}, Data: nil}}, `"c": unknown dtype`},
		{[]Tensor{F32Tensor("", nil, nil)}, "empty name"},
	}
	for _, tc := range tests {
		err := Write(&bytes.Buffer{}, tc.tensors, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Write(%v) error = %v, want one containing %q", tc.tensors[0].Name, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	var buf bytes.Buffer
	Write(&buf, goldenTensors(), nil)
	f.Add(buf.Bytes())
	if b, err := os.ReadFile(filepath.Join("testdata", "torch_written.safetensors")); err == nil {
		f.Add(b)
	}
	f.Add(header(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			return
		}
		// Whatever parses must read every tensor and write back to a file
		// that parses to the same tensors.
		var ts []Tensor
		for _, in := range file.Tensors() {
			raw, err := file.Raw(in.Name)
			if err != nil {
				t.Fatal(err)
			}
			if in.DType == F32 || in.DType == BF16 || in.DType == F16 || in.DType == F64 {
				if _, err := file.Float32(in.Name); err != nil {
					t.Fatal(err)
				}
			}
			ts = append(ts, Tensor{Name: in.Name, DType: in.DType, Shape: in.Shape, Data: raw})
		}
		var out bytes.Buffer
		if err := Write(&out, ts, file.Metadata); err != nil {
			t.Fatalf("re-writing a parsed file: %v", err)
		}
		again, err := Parse(out.Bytes())
		if err != nil {
			t.Fatalf("re-written file does not parse: %v", err)
		}
		if !reflect.DeepEqual(again.Names(), file.Names()) {
			t.Fatalf("names changed: %v -> %v", file.Names(), again.Names())
		}
	})
}
