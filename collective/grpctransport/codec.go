package grpctransport

import (
	"fmt"
	"io"

	"google.golang.org/grpc/mem"

	"github.com/loomtrain/loom/collective"
)

// rawCodec is the encoding.CodecV2 of the Ring service: a message is a
// collective header (collective.AppendHeader) followed by the payload's
// float32s in machine byte order, with no protobuf framing.
type rawCodec struct{}

func (rawCodec) Name() string { return "loom-raw" }

// outFrame is a message to send. The payload is referenced, not copied:
// done is closed when gRPC has finished reading it.
type outFrame struct {
	hdr, payload []byte
	done         donePool
}

// inFrame is a received message: its header, and the rest of gRPC's pooled
// buffers, held (by reference) until Recv copies them into the destination.
type inFrame struct {
	h     collective.Header
	r     *mem.Reader // raw codec
	bytes []byte      // proto codec
}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*outFrame)
	if !ok {
		return nil, fmt.Errorf("grpctransport: raw codec cannot marshal %T", v)
	}
	if mem.IsBelowBufferPoolingThreshold(cap(f.payload)) {
		// Too small for gRPC to track its release: copy it.
		b := append(f.hdr, f.payload...)
		close(f.done)
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	p := f.payload
	return mem.BufferSlice{mem.SliceBuffer(f.hdr), mem.NewBuffer(&p, f.done)}, nil
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
	if r.Remaining() != int(h.Len)*4 {
		r.Close()
		return fmt.Errorf("grpctransport: frame: header says %d elements, %d payload bytes follow", h.Len, r.Remaining())
	}
	f.h, f.r = h, r
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

// copyTo copies the payload into dst (len(dst) == h.Len).
func (f *inFrame) copyTo(dst []float32) error {
	b := f32bytes(dst)
	if f.r == nil {
		copy(b, f.bytes)
		return nil
	}
	_, err := io.ReadFull(f.r, b)
	return err
}

func (f *inFrame) free() {
	if f.r != nil {
		f.r.Close()
		f.r = nil
	}
}
