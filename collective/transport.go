package collective

import (
	"context"
	"encoding/binary"
	"fmt"
)

// Op names a collective operation; it travels in every message header.
type Op uint8

// The operations. OpTest is for transport conformance tests.
const (
	OpTest Op = iota
	OpAllReduce
	OpReduceScatter
	OpAllGather
	OpBroadcast
	OpBarrier
	OpRingAttnFwd
	OpRingAttnBwd
	opCount
)

var opNames = [...]string{"test", "allreduce", "reducescatter", "allgather", "broadcast", "barrier", "ringattn-forward", "ringattn-backward"}

func (o Op) String() string {
	if o < opCount {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Header is the envelope of every message. Comm fills it and checks every
// field on receipt; a transport only carries it.
type Header struct {
	Job        string // job name, at most MaxJobLen bytes
	Generation uint64 // ring generation, bumped by the coordinator on every rebuild
	Seq        uint64 // operation sequence number within the generation
	Op         Op
	Step       uint32 // ring step within the operation
	Slice      uint32 // slice index within the step
	Len        uint32 // payload length in float32 elements (set by the transport on receipt)
}

// Transport carries ordered float32 messages between ranks. Messages on one
// (sender, receiver, channel) triple arrive in the order they were sent;
// there is no ordering between different triples. Channels are independent
// lanes (the gRPC transport gives each its own connection) so that large
// transfers can run on several cores.
//
// Concurrency: at most one goroutine may Send on a given (to, ch) at a time
// and at most one may Recv on a given (from, ch); different pairs may be
// used concurrently. Close may be called at any time, from any goroutine,
// more than once.
type Transport interface {
	// Rank is this endpoint's index in [0, World()).
	Rank() int
	// World is the number of ranks.
	World() int
	// Channels is the number of independent lanes to each peer (≥ 1).
	Channels() int
	// Send delivers h and payload to rank to on lane ch. It may return before
	// the peer has received the message, but only once the transport no
	// longer reads payload, so the caller may overwrite it afterwards. h.Len
	// is ignored (the transport sends len(payload)). Errors: ctx.Err() when
	// ctx ends first, ErrClosed after Close, ErrPeerClosed when a peer that
	// was reached has gone (a peer never reached looks like a slow one: ctx
	// bounds the wait). After an error the lane is unusable.
	Send(ctx context.Context, to, ch int, h Header, payload []float32) error
	// Recv waits for the next message from rank from on lane ch and copies its
	// payload into dst[:h.Len]. A payload longer than dst is ErrTooLarge.
	// Other errors as for Send; ErrPeerClosed is returned only after every
	// message the peer sent before closing has been received. If Recv fails,
	// the transport may still write into dst until Close returns.
	Recv(ctx context.Context, from, ch int, dst []float32) (Header, error)
	// Close releases every connection and goroutine of the transport, makes
	// pending and later Send/Recv calls fail with ErrClosed, and makes the
	// peers' calls involving this rank fail with ErrPeerClosed.
	Close() error
}

// Wire format of a Header, shared by the byte-stream transports:
//
//	[0]      version (1)
//	[1]      op
//	[2:4]    job length J (little endian, ≤ MaxJobLen)
//	[4:8]    step
//	[8:12]   slice
//	[12:16]  payload length in float32 elements
//	[16:24]  generation
//	[24:32]  sequence
//	[32:32+J] job
const (
	headerFixedLen = 32
	wireVersion    = 1
	// MaxJobLen bounds the job name carried in every header.
	MaxJobLen = 256
)

// HeaderLen is the encoded size of h.
func HeaderLen(h Header) int { return headerFixedLen + len(h.Job) }

// AppendHeader appends the wire encoding of h to b. It panics if the job
// name is longer than MaxJobLen (New refuses such a Config).
func AppendHeader(b []byte, h Header) []byte {
	if len(h.Job) > MaxJobLen {
		panic("collective: job name longer than MaxJobLen")
	}
	var f [headerFixedLen]byte
	f[0] = wireVersion
	f[1] = byte(h.Op)
	binary.LittleEndian.PutUint16(f[2:], uint16(len(h.Job)))
	binary.LittleEndian.PutUint32(f[4:], h.Step)
	binary.LittleEndian.PutUint32(f[8:], h.Slice)
	binary.LittleEndian.PutUint32(f[12:], h.Len)
	binary.LittleEndian.PutUint64(f[16:], h.Generation)
	binary.LittleEndian.PutUint64(f[24:], h.Seq)
	b = append(b, f[:]...)
	return append(b, h.Job...)
}

// ParseHeaderFixed decodes the fixed part of a header and returns the job
// length that follows it. b must hold at least 32 bytes.
func ParseHeaderFixed(b []byte) (h Header, jobLen int, err error) {
	if len(b) < headerFixedLen {
		return Header{}, 0, fmt.Errorf("collective: header: %d bytes, want at least %d", len(b), headerFixedLen)
	}
	if b[0] != wireVersion {
		return Header{}, 0, fmt.Errorf("collective: header: version %d, want %d", b[0], wireVersion)
	}
	h.Op = Op(b[1])
	if h.Op >= opCount {
		return Header{}, 0, fmt.Errorf("collective: header: unknown op %d", b[1])
	}
	jobLen = int(binary.LittleEndian.Uint16(b[2:]))
	if jobLen > MaxJobLen {
		return Header{}, 0, fmt.Errorf("collective: header: job length %d over %d", jobLen, MaxJobLen)
	}
	h.Step = binary.LittleEndian.Uint32(b[4:])
	h.Slice = binary.LittleEndian.Uint32(b[8:])
	h.Len = binary.LittleEndian.Uint32(b[12:])
	h.Generation = binary.LittleEndian.Uint64(b[16:])
	h.Seq = binary.LittleEndian.Uint64(b[24:])
	return h, jobLen, nil
}

// ParseHeader decodes a complete header at the start of b and returns it
// with the number of bytes it used.
func ParseHeader(b []byte) (Header, int, error) {
	h, jl, err := ParseHeaderFixed(b)
	if err != nil {
		return Header{}, 0, err
	}
	if len(b) < headerFixedLen+jl {
		return Header{}, 0, fmt.Errorf("collective: header: job name truncated: %d of %d bytes", len(b)-headerFixedLen, jl)
	}
	h.Job = string(b[headerFixedLen : headerFixedLen+jl])
	return h, headerFixedLen + jl, nil
}

// ReduceReceiver is an optional interface of a Transport that can add a
// received payload into the destination straight from its own buffers,
// saving the staging copy of a reduce-scatter step. RecvAdd is Recv with
// dst[i] += payload[i] instead of dst[i] = payload[i] (one float32 addition
// per element, so the result is bit-identical to Recv then add); the payload
// must have exactly len(dst) elements, otherwise it is an ErrMismatch and
// dst is unchanged.
type ReduceReceiver interface {
	RecvAdd(ctx context.Context, from, ch int, dst []float32) (Header, error)
}

// CheckPeer is the range check every Transport's Send and Recv make: peer is
// another rank of the world and ch one of its channels. name is the
// transport's package, for the message.
func CheckPeer(name string, rank, world, channels, peer, ch int) error {
	if peer < 0 || peer >= world || peer == rank || ch < 0 || ch >= channels {
		return fmt.Errorf("%s: rank %d: peer %d channel %d out of range (world %d, %d channels)", name, rank, peer, ch, world, channels)
	}
	return nil
}
