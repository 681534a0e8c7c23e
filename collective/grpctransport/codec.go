package grpctransport

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"unsafe"

	"google.golang.org/grpc/mem"

	"github.com/loomtrain/loom/collective"
)

// rawCodec is the encoding.CodecV2 of the Ring service: a message is a
// collective header (collective.AppendHeader), zero padding, and the
// payload's float32s in little-endian order, with no protobuf framing.
//
// The padding makes gRPC's 5-byte message prefix plus header plus padding a
// multiple of 4 bytes, so that every full 16 KiB HTTP/2 DATA frame starts on
// a float32 boundary: the receiver then adds whole aligned frames without
// reassembling elements (research/collectives.md §7.1).
type rawCodec struct{}

// grpcPrefixLen is gRPC's per-message prefix (compression flag + length).
const grpcPrefixLen = 5

// padLen is the padding after a header of n bytes.
func padLen(n int) int { return (4 - (grpcPrefixLen+n)%4) % 4 }

func (rawCodec) Name() string { return "loom-raw" }

// outFrame is a message to send. The payload is referenced, not copied:
// done is closed when gRPC has finished reading it.
type outFrame struct {
	hdr, payload []byte
	done         donePool
}

// inFrame is a received message: its header, and gRPC's pooled buffers,
// held (by reference) until Recv copies or adds them into the destination.
type inFrame struct {
	h     collective.Header
	data  mem.BufferSlice // raw codec: the whole message, referenced
	off   int             // raw codec: where the payload starts in data
	bytes []byte          // proto codec: the payload
}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*outFrame)
	if !ok {
		return nil, fmt.Errorf("grpctransport: raw codec cannot marshal %T", v)
	}
	hdr := append(f.hdr, make([]byte, padLen(len(f.hdr)))...)
	if mem.IsBelowBufferPoolingThreshold(cap(f.payload)) {
		// Too small for gRPC to track its release: copy it.
		b := append(hdr, f.payload...)
		close(f.done)
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	p := f.payload
	return mem.BufferSlice{mem.SliceBuffer(hdr), mem.NewBuffer(&p, f.done)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*inFrame)
	if !ok {
		return fmt.Errorf("grpctransport: raw codec cannot unmarshal into %T", v)
	}
	r := data.Reader() // takes references; they outlive this call
	var fixed [32]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		r.Close()
		return fmt.Errorf("grpctransport: frame of %d bytes: header: %w", data.Len(), err)
	}
	h, jl, err := collective.ParseHeaderFixed(fixed[:])
	if err != nil {
		r.Close()
		return err
	}
	job := make([]byte, jl)
	if _, err := io.ReadFull(r, job); err != nil {
		r.Close()
		return fmt.Errorf("grpctransport: frame header: job name: %w", err)
	}
	h.Job = string(job)
	var pad [4]byte
	if _, err := io.ReadFull(r, pad[:padLen(32+jl)]); err != nil {
		r.Close()
		return fmt.Errorf("grpctransport: frame header: padding: %w", err)
	}
	rest := r.Remaining()
	r.Close()
	if rest != int(h.Len)*4 {
		return fmt.Errorf("grpctransport: frame: header says %d elements, %d payload bytes follow", h.Len, rest)
	}
	data.Ref() // keep the buffers past this call; released by free
	f.h, f.data, f.off = h, data, data.Len()-rest
	return nil
}

func (f *inFrame) parseProto(b []byte) error {
	h, n, err := collective.ParseHeader(b)
	if err != nil {
		return err
	}
	if len(b)-n != int(h.Len)*4 {
		return fmt.Errorf("grpctransport: frame: header says %d elements, %d payload bytes follow", h.Len, len(b)-n)
	}
	f.h, f.bytes = h, b[n:]
	return nil
}

// pieces calls fn on the payload's bytes, piece by piece, in order.
func (f *inFrame) pieces(fn func(b []byte)) {
	if f.data == nil {
		fn(f.bytes)
		return
	}
	skip := f.off
	for _, buf := range f.data {
		d := buf.ReadOnlyData()
		if skip >= len(d) {
			skip -= len(d)
			continue
		}
		fn(d[skip:])
		skip = 0
	}
}

// copyTo copies the payload into dst (len(dst) == h.Len).
func (f *inFrame) copyTo(dst []float32) {
	b := f32bytes(dst)
	f.pieces(func(p []byte) { b = b[copy(b, p):] })
}

// addTo adds the payload into dst (len(dst) == h.Len) straight from the
// received buffers. Pieces need not hold whole float32s: an element split
// across two pieces is assembled in a 4-byte carry.
func (f *inFrame) addTo(dst []float32) {
	var carry [4]byte
	nc := 0
	f.pieces(func(p []byte) {
		if nc > 0 {
			k := copy(carry[nc:], p)
			nc += k
			p = p[k:]
			if nc < 4 {
				return
			}
			dst[0] += math.Float32frombits(binary.LittleEndian.Uint32(carry[:]))
			dst = dst[1:]
			nc = 0
		}
		n := len(p) / 4
		if n > 0 && uintptr(unsafe.Pointer(&p[0]))%4 == 0 {
			// Aligned (the usual case, see rawCodec): add in place.
			addFloats(dst[:n], unsafe.Slice((*float32)(unsafe.Pointer(&p[0])), n))
		} else {
			addBytes(dst[:n], p[:4*n])
		}
		dst = dst[n:]
		nc = copy(carry[:], p[4*n:])
	})
}

func addFloats(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}

// addBytes adds little-endian float32s from b (4·len(dst) bytes) into dst.
func addBytes(dst []float32, b []byte) {
	b = b[:4*len(dst)]
	for i := range dst {
		dst[i] += math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

func (f *inFrame) free() {
	if f.data != nil {
		f.data.Free()
		f.data = nil
	}
}
