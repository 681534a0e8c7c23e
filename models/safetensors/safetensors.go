package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
)

// DType is a tensor element type as spelled in the header.
type DType string

// The element types of the format. Parse accepts all of them; Float32 can
// convert F32, F64, F16 and BF16.
const (
	BOOL DType = "BOOL"
	U8   DType = "U8"
	I8   DType = "I8"
	I16  DType = "I16"
	U16  DType = "U16"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I32  DType = "I32"
	U32  DType = "U32"
	F32  DType = "F32"
	F64  DType = "F64"
	I64  DType = "I64"
	U64  DType = "U64"
	F8E5 DType = "F8_E5M2"
	F8E4 DType = "F8_E4M3"
)

// Size returns the bytes per element, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case BOOL, U8, I8, F8E5, F8E4:
		return 1
	case I16, U16, F16, BF16:
		return 2
	case I32, U32, F32:
		return 4
	case F64, I64, U64:
		return 8
	}
	return 0
}

// MaxHeader is the largest header the format allows (100 MB).
const MaxHeader = 100 << 20

// Tensor is one named tensor with its raw little-endian bytes.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// F32Tensor encodes values as an F32 tensor.
func F32Tensor(name string, shape []int, values []float32) Tensor {
	b := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return Tensor{Name: name, DType: F32, Shape: append([]int(nil), shape...), Data: b}
}

// BF16Tensor encodes values as a BF16 tensor, rounding to nearest even.
func BF16Tensor(name string, shape []int, values []float32) Tensor {
	b := make([]byte, 2*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint16(b[2*i:], ToBF16(v))
	}
	return Tensor{Name: name, DType: BF16, Shape: append([]int(nil), shape...), Data: b}
}

// ToBF16 rounds a float32 to bfloat16 (round to nearest, ties to even; NaN
// stays NaN).
func ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if f != f {
		return uint16(u>>16) | 0x40 // keep a quiet NaN
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// FromBF16 widens a bfloat16 to float32 exactly.
func FromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// FromF16 widens an IEEE half to float32 exactly.
func FromF16(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: mant × 2^-24
		v := float32(mant) * float32(math.Ldexp(1, -24))
		if sign != 0 {
			v = -v
		}
		return v
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Write writes tensors in the order given, with metadata (plus "format":
// "pt"). It fails, naming the tensor, on a duplicate or empty name, an
// unknown dtype, a negative dimension or data whose length does not match
// the shape.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	hs := make([]TensorHeader, len(tensors))
	for i, t := range tensors {
		hs[i] = TensorHeader{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	hdr, err := EncodeHeader(hs, metadata)
	if err != nil {
		return err
	}
	for _, t := range tensors {
		if want := numel(t.Shape) * t.DType.Size(); len(t.Data) != want {
			return fmt.Errorf("safetensors: tensor %q: %d bytes of data, shape %v of %s needs %d", t.Name, len(t.Data), t.Shape, t.DType, want)
		}
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	for _, t := range tensors {
		if _, err := w.Write(t.Data); err != nil {
			return err
		}
	}
	return nil
}

func negative(shape []int) bool {
	for _, d := range shape {
		if d < 0 {
			return true
		}
	}
	return false
}

// TensorHeader describes a tensor to be written: its data follows the
// header in the order given.
type TensorHeader struct {
	Name  string
	DType DType
	Shape []int
}

// EncodeHeader returns the start of a file holding tensors in the order
// given: the 8-byte length and the JSON header (metadata plus "format":
// "pt", space-padded so that the data starts 8-byte aligned). The tensors'
// bytes follow it, each numel·dtype size long. It fails, naming the
// tensor, on a duplicate or empty name, an unknown dtype or a negative
// dimension. Write is EncodeHeader followed by the data.
func EncodeHeader(tensors []TensorHeader, metadata map[string]string) ([]byte, error) {
	type entry struct {
		DType   DType    `json:"dtype"`
		Shape   []int    `json:"shape"`
		Offsets [2]int64 `json:"data_offsets"`
	}
	meta := map[string]string{"format": "pt"}
	for k, v := range metadata {
		meta[k] = v
	}
	seen := map[string]bool{}
	var off int64
	// Build the header by hand so that tensors keep their order.
	var hdr bytes.Buffer
	hdr.Write(make([]byte, 8))
	hdr.WriteString("{")
	mb, _ := json.Marshal(meta)
	hdr.WriteString(`"__metadata__":`)
	hdr.Write(mb)
	for _, t := range tensors {
		switch {
		case t.Name == "":
			return nil, errors.New("safetensors: tensor with an empty name")
		case t.Name == "__metadata__":
			return nil, errors.New("safetensors: a tensor may not be called __metadata__")
		case seen[t.Name]:
			return nil, fmt.Errorf("safetensors: tensor %q written twice", t.Name)
		case t.DType.Size() == 0:
			return nil, fmt.Errorf("safetensors: tensor %q: unknown dtype %q", t.Name, t.DType)
		case negative(t.Shape):
			return nil, fmt.Errorf("safetensors: tensor %q: negative dimension in shape %v", t.Name, t.Shape)
		}
		seen[t.Name] = true
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		size := int64(numel(t.Shape) * t.DType.Size())
		eb, _ := json.Marshal(entry{t.DType, shape, [2]int64{off, off + size}})
		nb, _ := json.Marshal(t.Name)
		hdr.WriteString(",")
		hdr.Write(nb)
		hdr.WriteString(":")
		hdr.Write(eb)
		off += size
	}
	hdr.WriteString("}")
	for (hdr.Len()-8)%8 != 0 {
		hdr.WriteByte(' ')
	}
	b := hdr.Bytes()
	binary.LittleEndian.PutUint64(b, uint64(len(b)-8))
	return b, nil
}

// WriteFile writes a file atomically: to a temporary name in the same
// directory, then renamed over path.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := Write(f, tensors, metadata); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// Info describes one tensor of a parsed file.
type Info struct {
	Name    string
	DType   DType
	Shape   []int
	Offsets [2]int64 // relative to the data block
}

// File is a parsed safetensors file held in memory.
type File struct {
	Metadata map[string]string
	tensors  []Info // in data order
	byName   map[string]int
	data     []byte
}

// Parse validates buf as a safetensors file. Errors name the tensor or
// header field at fault.
func Parse(buf []byte) (*File, error) {
	if len(buf) < 8 {
		return nil, fmt.Errorf("safetensors: %d bytes is too short for the 8-byte header length", len(buf))
	}
	n := binary.LittleEndian.Uint64(buf)
	if n > MaxHeader {
		return nil, fmt.Errorf("safetensors: header length %d exceeds the 100 MB limit", n)
	}
	if uint64(len(buf)-8) < n {
		return nil, fmt.Errorf("safetensors: header length %d runs past the end of the %d-byte file", n, len(buf))
	}
	data := buf[8+n:]
	h, err := ParseHeader(buf[8:8+n], int64(len(data)))
	if err != nil {
		return nil, err
	}
	f := &File{Metadata: h.Metadata, tensors: h.Tensors, byName: map[string]int{}, data: data}
	for i, in := range f.tensors {
		f.byName[in.Name] = i
	}
	return f, nil
}

// HeaderLen reads the 8-byte little-endian header length that starts a
// file and checks it against MaxHeader and the file's size.
func HeaderLen(first8 []byte, fileSize int64) (int64, error) {
	if len(first8) < 8 || fileSize < 8 {
		return 0, fmt.Errorf("safetensors: %d bytes is too short for the 8-byte header length", fileSize)
	}
	n := binary.LittleEndian.Uint64(first8)
	if n > MaxHeader {
		return 0, fmt.Errorf("safetensors: header length %d exceeds the 100 MB limit", n)
	}
	if uint64(fileSize-8) < n {
		return 0, fmt.Errorf("safetensors: header length %d runs past the end of the %d-byte file", n, fileSize)
	}
	return int64(n), nil
}

// Header is a parsed header: the metadata and the tensors in data order.
type Header struct {
	Metadata map[string]string
	Tensors  []Info
}

// ParseHeader validates the JSON header of a file whose data block (the
// bytes after the header) is dataLen long, without the data itself: what
// a reader that fetches tensors by range needs. Errors name the tensor or
// header field at fault.
func ParseHeader(hdr []byte, dataLen int64) (*Header, error) {
	dec := json.NewDecoder(bytes.NewReader(hdr))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("safetensors: header is not JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("safetensors: header is not a JSON object")
	}
	h := &Header{}
	seen := map[string]bool{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("safetensors: header: %w", err)
		}
		name := kt.(string)
		if name == "__metadata__" {
			if h.Metadata != nil {
				return nil, errors.New("safetensors: header: __metadata__ appears twice")
			}
			var m map[string]string
			if err := dec.Decode(&m); err != nil {
				return nil, fmt.Errorf("safetensors: header: __metadata__ must map strings to strings: %w", err)
			}
			if m == nil {
				m = map[string]string{}
			}
			h.Metadata = m
			continue
		}
		var e struct {
			DType   *DType   `json:"dtype"`
			Shape   *[]int   `json:"shape"`
			Offsets *[]int64 `json:"data_offsets"`
		}
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("safetensors: tensor %q: %w", name, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("safetensors: tensor %q appears twice in the header", name)
		}
		seen[name] = true
		switch {
		case e.DType == nil:
			return nil, fmt.Errorf("safetensors: tensor %q: missing dtype", name)
		case e.Shape == nil:
			return nil, fmt.Errorf("safetensors: tensor %q: missing shape", name)
		case e.Offsets == nil || len(*e.Offsets) != 2:
			return nil, fmt.Errorf("safetensors: tensor %q: data_offsets must be [begin, end]", name)
		case e.DType.Size() == 0:
			return nil, fmt.Errorf("safetensors: tensor %q: unknown dtype %q", name, *e.DType)
		}
		in := Info{Name: name, DType: *e.DType, Shape: *e.Shape, Offsets: [2]int64{(*e.Offsets)[0], (*e.Offsets)[1]}}
		size := int64(in.DType.Size())
		for _, d := range in.Shape {
			if d < 0 {
				return nil, fmt.Errorf("safetensors: tensor %q: negative dimension in shape %v", name, in.Shape)
			}
			if d > 0 && size > math.MaxInt64/int64(d) {
				return nil, fmt.Errorf("safetensors: tensor %q: shape %v overflows", name, in.Shape)
			}
			size *= int64(d)
		}
		if in.Offsets[0] < 0 || in.Offsets[1] < in.Offsets[0] || in.Offsets[1]-in.Offsets[0] != size {
			return nil, fmt.Errorf("safetensors: tensor %q: data_offsets %v hold %d bytes, shape %v of %s needs %d",
				name, in.Offsets, in.Offsets[1]-in.Offsets[0], in.Shape, in.DType, size)
		}
		h.Tensors = append(h.Tensors, in)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("safetensors: header: %w", err)
	}
	if rest := strings.TrimRight(string(hdr[dec.InputOffset():]), " "); rest != "" {
		return nil, errors.New("safetensors: header: data after the JSON object")
	}
	if h.Metadata == nil {
		h.Metadata = map[string]string{}
	}
	// The tensors must tile the data block: sorted by offset, each begins
	// where the previous ended, and the last ends at the end of the file.
	sort.SliceStable(h.Tensors, func(i, j int) bool { return h.Tensors[i].Offsets[0] < h.Tensors[j].Offsets[0] })
	var at int64
	for _, in := range h.Tensors {
		if in.Offsets[0] != at {
			if in.Offsets[0] < at {
				return nil, fmt.Errorf("safetensors: tensor %q: data_offsets %v overlap the previous tensor (which ends at %d)", in.Name, in.Offsets, at)
			}
			return nil, fmt.Errorf("safetensors: tensor %q: data_offsets %v leave a hole after byte %d", in.Name, in.Offsets, at)
		}
		at = in.Offsets[1]
	}
	if at != dataLen {
		return nil, fmt.Errorf("safetensors: tensors cover %d bytes of data but the file holds %d", at, dataLen)
	}
	return h, nil
}

// Decode converts the raw little-endian bytes of a tensor of dtype d to
// float32 into out (len(out) elements): F32, F64, F16 and BF16.
func Decode(d DType, b []byte, out []float32) error {
	if len(b) != len(out)*d.Size() {
		return fmt.Errorf("safetensors: %d bytes of %s for %d values", len(b), d, len(out))
	}
	switch d {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
		}
	case BF16:
		for i := range out {
			out[i] = FromBF16(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case F16:
		for i := range out {
			out[i] = FromF16(binary.LittleEndian.Uint16(b[2*i:]))
		}
	default:
		return fmt.Errorf("safetensors: dtype %s is not a float type", d)
	}
	return nil
}

// ReadFile reads and parses the file at path; errors start with the path.
func ReadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Tensors returns the tensors' descriptions in data order.
func (f *File) Tensors() []Info { return append([]Info(nil), f.tensors...) }

// Names returns the tensor names in data order.
func (f *File) Names() []string {
	out := make([]string, len(f.tensors))
	for i, t := range f.tensors {
		out[i] = t.Name
	}
	return out
}

// Info returns the description of one tensor.
func (f *File) Info(name string) (Info, bool) {
	i, ok := f.byName[name]
	if !ok {
		return Info{}, false
	}
	return f.tensors[i], true
}

// Raw returns the bytes of one tensor (a view into the file).
func (f *File) Raw(name string) ([]byte, error) {
	in, ok := f.Info(name)
	if !ok {
		return nil, fmt.Errorf("safetensors: no tensor %q", name)
	}
	return f.data[in.Offsets[0]:in.Offsets[1]], nil
}

// Float32 returns a tensor's values converted to float32. It accepts F32,
// F64, F16 and BF16 tensors and names the tensor otherwise.
func (f *File) Float32(name string) ([]float32, error) {
	in, ok := f.Info(name)
	if !ok {
		return nil, fmt.Errorf("safetensors: no tensor %q", name)
	}
	out := make([]float32, numel(in.Shape))
	if err := Decode(in.DType, f.data[in.Offsets[0]:in.Offsets[1]], out); err != nil {
		return nil, fmt.Errorf("safetensors: tensor %q: %w", name, err)
	}
	return out, nil
}

// ToF16 rounds a float32 to an IEEE half (round to nearest even; values
// beyond the range become ±Inf, NaN stays NaN).
func ToF16(f float32) uint16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	exp := int(u>>23) & 0xff
	mant := u & 0x7fffff
	switch {
	case exp == 0xff:
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exp-127 > 15:
		return sign | 0x7c00
	case exp-127 < -25:
		return sign
	case exp-127 < -14: // subnormal half
		mant |= 0x800000
		shift := uint(-14 - (exp - 127) + 13)
		h := mant >> shift
		rem := mant & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(exp-127+15)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // may carry into the exponent, which is the right rounding
	}
	return sign | uint16(h)
}
