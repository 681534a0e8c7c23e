package grpctransport

import (
	"context"
	"encoding/binary"
	"net"

	"google.golang.org/grpc/credentials"
)

// frameConn is the connection gRPC's HTTP/2 framer writes to and reads from
// (installed by frameCreds, so it sees plaintext HTTP/2). It changes how the
// bytes move, never which bytes move.
//
// Write side (research/collectives.md §7): grpc-go v1.85 caps DATA frames at
// 16 KiB and writes each as two Writes, the 9-byte frame header and then the
// payload pieces (internal/transport/http_util.go, framer.writeData). With
// gRPC's write buffer on, every payload is copied into the buffer; with it
// off (WriteBufferSize 0) every frame costs two syscalls. frameConn copies
// each DATA header (9 bytes), holds the payload pieces by reference, and
// sends many frames with one writev: no copy of the payload, and about as
// few syscalls as the buffered path.
//
// Holding a payload slice after the Write that passed it returns is safe
// only while its owner keeps it: gRPC releases a message's buffers once the
// frame that ends the message is written (mem.Reader.Discard frees a
// buffer when its last byte is consumed, and the codecs of this package
// put the payload last in a message), after which the sender may reuse
// the memory. So frameConn follows each stream's gRPC messages (the 5-byte
// prefix, flag and length, of gRPC over HTTP/2) and sends everything it
// holds before returning from the Write that completes a frame in which a
// message ends. It also sends everything before, and with, any Write that
// is not part of a DATA frame (http2.Framer writes a whole frame in one
// Write, into a buffer it reuses), at a zero-length DATA frame, and when it
// holds maxHeld bytes or maxHeldFrames frames; maxHeld stays well under the
// flow-control windows, so a sender stalled on quota with frames held still
// gets window updates from the receiver for what it did send.
//
// That relies on this contract of the writer, which grpc-go's framer keeps
// (writeData writes the header and then its data with no other Write in
// between, from loopy, the connection's one writer goroutine): after a
// 9-byte DATA header with length L > 0, the next Writes carry exactly the
// frame's L payload bytes. If a Write overshoots the frame, frameConn sends
// it and all it holds at once and from then on sends every frame as soon as
// it is complete, since it can no longer follow the messages.
//
// Read side (optional, readv): with gRPC's read buffer off, the framer reads
// a frame as io.ReadFull of its 9-byte header and then of its L-byte payload
// straight into the destination buffer, two syscalls per frame. frameConn
// reads each Read's bytes together with up to 9 bytes beyond them (the next
// frame's header) in one readv, and serves later Reads from those first: one
// syscall per frame in the steady state, and no copy of payloads.
//
// Writes come from one goroutine at a time and Reads from one goroutine at a
// time (gRPC's loopy writer and reader); a Write and a Read may run
// concurrently, and Close may be called from any goroutine.
type frameConn struct {
	net.Conn

	// write side
	maxHeld int                                  // send once this many bytes are held
	hdrs    [maxHeldFrames * frameHeaderLen]byte // copies of the held frames' headers
	frames  int                                  // held frames (headers in hdrs)
	vec     [][]byte                             // held bytes: headers and payload pieces, in order
	held    int                                  // bytes in vec
	need    int                                  // payload bytes of the current frame not yet seen
	cur     *msgState                            // the current frame's stream
	curID   uint32
	curEnd  bool  // the current frame ends its stream
	release bool  // a message ends in the current frame: send at its end
	lost    bool  // the writer broke the contract: send every frame at once
	werr    error // a failed write; the connection is broken
	streams map[uint32]*msgState

	// read side
	rd  func([]byte) (int, error) // conn.Read, or a readv into p and la (called with la empty)
	la  [frameHeaderLen]byte      // read-ahead
	laR int                       // la[laR:laW] not yet returned
	laW int
	rv  readvState // readv_linux.go
}

// frameHeaderLen is the length of an HTTP/2 frame header (RFC 9113 §4.1).
const frameHeaderLen = 9

// HTTP/2 DATA frames: type and END_STREAM flag.
const (
	frameTypeData     = 0x0
	flagDataEndStream = 0x1
	grpcMsgPrefixLen  = 5 // compressed flag, big-endian length
	maxHeldFrames     = 128
	defaultMaxHeld    = 1 << 20
)

// frameLen is the length field of an HTTP/2 frame header.
func frameLen(h []byte) int { return int(h[0])<<16 | int(h[1])<<8 | int(h[2]) }

// frameStream is the stream identifier of an HTTP/2 frame header.
func frameStream(h []byte) uint32 {
	return (uint32(h[5])<<24 | uint32(h[6])<<16 | uint32(h[7])<<8 | uint32(h[8])) & (1<<31 - 1)
}

// msgState follows the gRPC messages of one stream's DATA payload.
type msgState struct {
	prefix [grpcMsgPrefixLen]byte
	have   int // prefix bytes seen of the current message
	left   int // body bytes of the current message not yet seen
}

// consume follows p through the stream's messages and reports whether a
// message ended in it.
func (m *msgState) consume(p []byte) (ended bool) {
	for len(p) > 0 {
		if m.have < grpcMsgPrefixLen {
			k := copy(m.prefix[m.have:], p)
			m.have += k
			p = p[k:]
			if m.have == grpcMsgPrefixLen {
				m.left = int(binary.BigEndian.Uint32(m.prefix[1:]))
				if m.left == 0 {
					m.have, ended = 0, true
				}
			}
			continue
		}
		k := min(m.left, len(p))
		m.left -= k
		p = p[k:]
		if m.left == 0 {
			m.have, ended = 0, true
		}
	}
	return ended
}

// newFrameConn wraps c. maxHeld (0: defaultMaxHeld) bounds the bytes the
// write side holds. readv turns on the read side, where the platform and c
// support it (a *net.TCPConn on Linux); otherwise Reads go straight to c.
func newFrameConn(c net.Conn, maxHeld int, readv bool) *frameConn {
	if maxHeld <= 0 {
		maxHeld = defaultMaxHeld
	}
	fc := &frameConn{Conn: c, rd: c.Read, maxHeld: maxHeld, streams: map[uint32]*msgState{}}
	if readv {
		fc.rd = fc.readvFunc()
	}
	return fc
}

// Write implements net.Conn; see frameConn for what it holds and when it
// sends. An error is the error of the writev that sent b (and maybe earlier
// Writes' bytes); the connection is broken then, and every later Write
// returns it.
func (c *frameConn) Write(b []byte) (int, error) {
	if c.werr != nil {
		return 0, c.werr
	}
	if c.need == 0 {
		if len(b) == frameHeaderLen && b[3] == frameTypeData && frameLen(b) > 0 {
			c.startFrame(b)
			return len(b), nil
		}
		if len(b) == frameHeaderLen && b[3] == frameTypeData && b[4]&flagDataEndStream != 0 {
			delete(c.streams, frameStream(b))
		}
		return c.send(b)
	}
	if len(b) > c.need {
		c.lost = true
		c.need = 0
		return c.send(b)
	}
	c.need -= len(b)
	if !c.lost && c.cur.consume(b) {
		c.release = true
	}
	if c.need > 0 {
		c.vec = append(c.vec, b)
		c.held += len(b)
		return len(b), nil
	}
	// The frame is complete.
	if c.curEnd {
		delete(c.streams, c.curID)
	} else if c.cur.have == 0 {
		delete(c.streams, c.curID) // between messages: nothing to follow
	}
	if c.release || c.lost || c.curEnd || c.held+len(b) >= c.maxHeld || c.frames == maxHeldFrames {
		return c.send(b)
	}
	c.vec = append(c.vec, b)
	c.held += len(b)
	return len(b), nil
}

// startFrame holds the DATA frame header h (L > 0).
func (c *frameConn) startFrame(h []byte) {
	hdr := c.hdrs[c.frames*frameHeaderLen : (c.frames+1)*frameHeaderLen]
	copy(hdr, h)
	c.frames++
	c.vec = append(c.vec, hdr)
	c.held += frameHeaderLen
	c.need = frameLen(h)
	c.curID, c.curEnd, c.release = frameStream(h), h[4]&flagDataEndStream != 0, false
	c.cur = c.streams[c.curID]
	if c.cur == nil {
		c.cur = &msgState{}
		c.streams[c.curID] = c.cur
	}
}

// send writes everything held and then b with one writev, and returns how
// many of b's bytes went out.
func (c *frameConn) send(b []byte) (int, error) {
	held := c.held
	if held == 0 {
		n, err := c.Conn.Write(b)
		if err != nil {
			c.werr = err
		}
		return n, err
	}
	c.vec = append(c.vec, b)
	bufs := net.Buffers(c.vec)
	n, err := bufs.WriteTo(c.Conn)
	clear(c.vec) // drop the references to the payloads
	c.vec, c.held, c.frames, c.release = c.vec[:0], 0, 0, false
	if err != nil {
		c.werr = err
	}
	return min(max(int(n)-held, 0), len(b)), err
}

// Read implements net.Conn; see frameConn for the read-ahead.
func (c *frameConn) Read(p []byte) (int, error) {
	if c.laR < c.laW {
		// A short Read rather than one that might block with data in
		// hand; the next Read goes to the socket.
		n := copy(p, c.la[c.laR:c.laW])
		c.laR += n
		return n, nil
	}
	return c.rd(p)
}

// frameCreds wraps TransportCredentials so that gRPC's framer talks to a
// frameConn around the connection the inner handshake returns (plaintext
// for insecure credentials, the *tls.Conn for TLS).
type frameCreds struct {
	credentials.TransportCredentials
	maxHeld int // see newFrameConn
	readv   bool
}

func (f frameCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, ai, err := f.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		return nil, nil, err
	}
	return newFrameConn(c, f.maxHeld, f.readv), ai, nil
}

func (f frameCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, ai, err := f.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return nil, nil, err
	}
	return newFrameConn(c, f.maxHeld, f.readv), ai, nil
}

func (f frameCreds) Clone() credentials.TransportCredentials {
	return frameCreds{TransportCredentials: f.TransportCredentials.Clone(), maxHeld: f.maxHeld, readv: f.readv}
}
