package tokenizer

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Protocol-buffer wire types (proto2 and proto3 share them).
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// protoField is one field of a message as it appears on the wire: its
// number, wire type and value (the varint, the fixed-width bits, or the
// length-delimited bytes, which alias the message).
type protoField struct {
	num   int
	wire  int
	u     uint64
	bytes []byte
}

// walkProto calls fn for every field of the message in b, in wire order.
// path names the message in errors ("normalizer_spec"). Unknown fields are
// the caller's to skip (fn ignores them); groups (wire types 3 and 4) are
// errors, as no SentencePiece message uses them.
func walkProto(b []byte, path string, fn func(f protoField) error) error {
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return fmt.Errorf("%s: truncated field key", path)
		}
		b = b[n:]
		if key>>3 == 0 || key>>3 > math.MaxInt32 {
			return fmt.Errorf("%s: field number %d is not valid", path, key>>3)
		}
		f := protoField{num: int(key >> 3), wire: int(key & 7)}
		switch f.wire {
		case wireVarint:
			f.u, n = binary.Uvarint(b)
			if n <= 0 {
				return fmt.Errorf("%s: field %d: truncated varint", path, f.num)
			}
			b = b[n:]
		case wireFixed64:
			if len(b) < 8 {
				return fmt.Errorf("%s: field %d: truncated fixed64", path, f.num)
			}
			f.u, b = binary.LittleEndian.Uint64(b), b[8:]
		case wireFixed32:
			if len(b) < 4 {
				return fmt.Errorf("%s: field %d: truncated fixed32", path, f.num)
			}
			f.u, b = uint64(binary.LittleEndian.Uint32(b)), b[4:]
		case wireBytes:
			l, n := binary.Uvarint(b)
			if n <= 0 {
				return fmt.Errorf("%s: field %d: truncated length", path, f.num)
			}
			b = b[n:]
			if l > uint64(len(b)) {
				return fmt.Errorf("%s: field %d: length %d runs past the end (%d bytes left)", path, f.num, l, len(b))
			}
			f.bytes, b = b[:l], b[l:]
		default:
			return fmt.Errorf("%s: field %d: wire type %d is not supported", path, f.num, f.wire)
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// want checks that f has the wire type a field of this kind must have.
func (f protoField) want(path string, wire int) error {
	if f.wire != wire {
		return fmt.Errorf("%s: wire type %d, want %d", path, f.wire, wire)
	}
	return nil
}

// int32 reads a proto int32 (negative values are 10-byte varints).
func (f protoField) int32(path string) (int, error) {
	if err := f.want(path, wireVarint); err != nil {
		return 0, err
	}
	v := int64(f.u)
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, fmt.Errorf("%s: %d does not fit an int32", path, v)
	}
	return int(v), nil
}

func (f protoField) bool(path string) (bool, error) {
	if err := f.want(path, wireVarint); err != nil {
		return false, err
	}
	return f.u != 0, nil
}

func (f protoField) float32(path string) (float32, error) {
	if err := f.want(path, wireFixed32); err != nil {
		return 0, err
	}
	return math.Float32frombits(uint32(f.u)), nil
}

func (f protoField) string(path string) (string, error) {
	if err := f.want(path, wireBytes); err != nil {
		return "", err
	}
	return string(f.bytes), nil
}
