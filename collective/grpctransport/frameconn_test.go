package grpctransport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// recConn is a fake net.Conn that records what is written to it. It has no
// writev, so net.Buffers.WriteTo writes each buffer with its own Write: the
// order and timing of the bytes is what the test observes.
type recConn struct {
	net.Conn // nil: only Write is used
	got      bytes.Buffer
	writes   int
	fail     int // if > 0, the fail-th Write fails after half its bytes
}

func (c *recConn) Write(b []byte) (int, error) {
	c.writes++
	if c.writes == c.fail {
		c.got.Write(b[:len(b)/2])
		return len(b) / 2, errors.New("recConn: injected failure")
	}
	return c.got.Write(b)
}

// header is an HTTP/2 frame header.
func header(length int, typ, flags byte, stream uint32) []byte {
	return []byte{byte(length >> 16), byte(length >> 8), byte(length), typ, flags,
		byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream)}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return b
}

// grpcMsg is a gRPC message the way grpc-go hands it to loopy: its 5-byte
// prefix (a fresh slice per message) and the codec's buffers; the last,
// "payload", is released (here: scribbled over) once the frame that ends
// the message is written, as the sender reuses it then.
type grpcMsg struct {
	bufs [][]byte // prefix, codec header, payload (the last two optional)
}

// randomMsg is a message of up to 200 bytes, or (if big) sometimes of
// 16–80 KiB.
func randomMsg(rng *rand.Rand, big bool) grpcMsg {
	n := rng.IntN(200)
	switch rng.IntN(6) {
	case 0:
		n = 0
	case 1:
		if big {
			n = 1<<14 + rng.IntN(1<<16)
		}
	}
	body := randBytes(rng, n)
	prefix := make([]byte, grpcMsgPrefixLen)
	binary.BigEndian.PutUint32(prefix[1:], uint32(n))
	m := grpcMsg{bufs: [][]byte{prefix}}
	if k := rng.IntN(min(n, 40) + 1); k > 0 && rng.IntN(2) == 0 {
		m.bufs = append(m.bufs, body[:k:k]) // codec header, then payload
		body = body[k:]
	}
	if len(body) > 0 {
		m.bufs = append(m.bufs, body)
	}
	return m
}

// loopySim writes random streams of gRPC messages through a frameConn the
// way grpc-go's loopy writer does: streams take turns; a DATA frame
// carries at most maxFrame bytes of one message, as a header Write (from
// a buffer reused for every header) and Writes of the message's pieces;
// a stream may end with END_STREAM on its last frame or with an empty DATA
// frame; other frames are single Writes from a reused buffer. After every
// Write it checks the connection against the reference (the concatenation
// of what was written, as it was when written): a prefix of it always, all
// of it after a Write that completes a frame in which a message ends or
// that is not part of a DATA frame; and released payloads must not reach
// the connection changed.
type loopySim struct {
	t        testing.TB
	rng      *rand.Rand
	c        *frameConn
	rec      *recConn
	want     bytes.Buffer
	hdrBuf   [frameHeaderLen]byte // reused like framer.headerBuf
	ctrlBuf  []byte               // reused like http2.Framer's write buffer
	maxFrame int
	preface  bool     // start with the client preface (not a frame)
	checked  int      // bytes on the conn already compared
	log      [][]byte // copies of the Writes made
}

func (s *loopySim) write(b []byte, flushed bool, what string) {
	s.t.Helper()
	s.want.Write(b)
	s.log = append(s.log, bytes.Clone(b))
	if n, err := s.c.Write(b); n != len(b) || err != nil {
		s.t.Fatalf("%s: Write(%d bytes) = %d, %v; want %d, nil", what, len(b), n, err, len(b))
	}
	got, want := s.rec.got.Bytes(), s.want.Bytes()
	if len(got) > len(want) || !bytes.Equal(got[s.checked:], want[s.checked:len(got)]) {
		s.t.Fatalf("%s: the %d bytes on the conn differ from what was written at byte %d", what, len(got), firstDiff(got, want))
	}
	s.checked = len(got)
	if flushed && len(got) != len(want) {
		s.t.Fatalf("%s: %d of %d bytes on the conn; want all", what, len(got), len(want))
	}
	if s.c.held >= s.c.maxHeld+frameHeaderLen+s.maxFrame {
		s.t.Fatalf("%s: %d bytes held, max %d", what, s.c.held, s.c.maxHeld)
	}
	clear(s.hdrBuf[:]) // the writer reuses these buffers
	clear(s.ctrlBuf)
}

func (s *loopySim) control() {
	l := s.rng.IntN(20)
	s.ctrlBuf = append(append(s.ctrlBuf[:0], header(l, byte(1+s.rng.IntN(9)), 0, 0)...), randBytes(s.rng, l)...)
	s.write(s.ctrlBuf, true, "control frame")
}

type simStream struct {
	id   uint32
	msgs []grpcMsg
	off  int  // bytes of msgs[0] written
	end  bool // END_STREAM on the last frame (else an empty DATA frame)
}

func (s *loopySim) run(nStreams, nMsgs int) {
	var streams []*simStream
	for i := range nStreams {
		st := &simStream{id: uint32(2*i + 1), end: s.rng.IntN(2) == 0}
		for range 1 + s.rng.IntN(nMsgs) {
			st.msgs = append(st.msgs, randomMsg(s.rng, s.maxFrame >= 1<<14))
		}
		streams = append(streams, st)
	}
	if s.preface {
		s.write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), true, "preface")
	}
	for len(streams) > 0 {
		if s.rng.IntN(10) == 0 {
			s.control()
		}
		i := s.rng.IntN(len(streams))
		st := streams[i]
		m := st.msgs[0]
		total := 0
		for _, b := range m.bufs {
			total += len(b)
		}
		size := min(s.maxFrame, total-st.off)
		last := st.off+size == total
		endStream := last && len(st.msgs) == 1 && st.end
		var flags byte
		if endStream {
			flags = flagDataEndStream
		}
		copy(s.hdrBuf[:], header(size, frameTypeData, flags, st.id))
		what := fmt.Sprintf("stream %d frame of %d bytes", st.id, size)
		s.write(s.hdrBuf[:], false, what+" header")
		// The pieces: the message's bytes [off, off+size), a piece per
		// buffer, as mem.Reader.Peek returns them.
		skip, left := st.off, size
		for _, b := range m.bufs {
			if skip >= len(b) {
				skip -= len(b)
				continue
			}
			p := b[skip:min(len(b), skip+left)]
			skip, left = 0, left-len(p)
			s.write(p, left == 0 && last, what)
			if left == 0 {
				break
			}
		}
		st.off += size
		if last {
			clear(m.bufs[len(m.bufs)-1]) // released: the sender reuses it
			st.msgs, st.off = st.msgs[1:], 0
		}
		if len(st.msgs) == 0 {
			if !st.end {
				copy(s.hdrBuf[:], header(0, frameTypeData, flagDataEndStream, st.id))
				s.write(s.hdrBuf[:], true, fmt.Sprintf("stream %d empty END_STREAM frame", st.id))
			}
			streams = append(streams[:i], streams[i+1:]...)
		}
	}
	if s.c.held != 0 || len(s.c.vec) != 0 || len(s.c.streams) != 0 {
		s.t.Fatalf("at the end: %d bytes in %d pieces held, %d streams followed", s.c.held, len(s.c.vec), len(s.c.streams))
	}
}

func newSim(t testing.TB, seed uint64, maxHeld int) *loopySim {
	rng := rand.New(rand.NewPCG(seed, 2))
	rec := &recConn{}
	maxFrame := 1 + rng.IntN(64)
	if rng.IntN(2) == 0 {
		maxFrame = 1 << 14
	}
	return &loopySim{t: t, rng: rng, rec: rec, c: newFrameConn(rec, maxHeld, false), maxFrame: maxFrame, preface: true}
}

func TestFrameConnWriteRandom(t *testing.T) {
	for seed := range uint64(300) {
		newSim(t, seed, []int{1, 100, 1 << 15, 1 << 20}[seed%4]).run(1+int(seed%3), 12)
	}
}

// FuzzFrameConnWrite runs loopySim with fuzzed random choices.
func FuzzFrameConnWrite(f *testing.F) {
	f.Add(uint64(1), uint32(1<<20), uint8(2))
	f.Add(uint64(2), uint32(7), uint8(1))
	f.Fuzz(func(t *testing.T, seed uint64, maxHeld uint32, streams uint8) {
		newSim(t, seed, int(maxHeld%(2<<20))).run(1+int(streams%4), 8)
	})
}

// FuzzFrameConnWriteBytes writes arbitrary bytes, cut into Writes as cuts
// say and keeping the writer's contract (a DATA header with L > 0 is
// followed by exactly L payload bytes), then a SETTINGS frame: whatever
// the gRPC message prefixes in the payload say, every byte must reach the
// connection in order.
func FuzzFrameConnWriteBytes(f *testing.F) {
	f.Add([]byte{0, 0, 10, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'}, []byte{9, 2, 3})
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), []byte{24})
	f.Add([]byte{0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 3, 0, 0, 0, 0, 0, 1, 1, 2, 3}, []byte{9, 9, 1, 1, 1})
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		rec := &recConn{}
		c := newFrameConn(rec, 1<<20, false)
		rest, ci, need := stream, 0, 0
		for len(rest) > 0 {
			m := len(rest)
			if ci < len(cuts) {
				m = min(max(int(cuts[ci]), 1), len(rest))
				ci++
			}
			if need > 0 {
				m = min(m, need)
			}
			w := rest[:m]
			rest = rest[m:]
			if need > 0 {
				need -= m
			} else if len(w) == frameHeaderLen && w[3] == frameTypeData && frameLen(w) > 0 {
				need = frameLen(w)
			}
			if n, err := c.Write(w); n != len(w) || err != nil {
				t.Fatalf("Write(%d bytes) = %d, %v", len(w), n, err)
			}
		}
		if need > 0 {
			c.Write(make([]byte, need))
		} else {
			stream = stream[:len(stream):len(stream)]
		}
		settings := header(0, 0x4, 0, 0)
		c.Write(settings)
		if got := rec.got.Bytes(); !bytes.HasPrefix(got, stream) || !bytes.HasSuffix(got, settings) || len(got) != len(stream)+need+len(settings) {
			t.Fatalf("conn got %d bytes, want the %d written", len(got), len(stream)+need+len(settings))
		}
	})
}

// TestFrameConnWriteHolds checks the cases one by one: what reaches the
// connection after each Write.
func TestFrameConnWriteHolds(t *testing.T) {
	msg := func(s string) []byte { return append([]byte{0, 0, 0, 0, byte(len(s))}, s...) }
	hello := msg("hello") // a 10-byte frame payload that ends a message
	for _, tc := range []struct {
		name    string
		maxHeld int
		writes  [][]byte
		want    []int // bytes on the conn after each write
	}{
		{"message in one frame", 0, [][]byte{header(10, frameTypeData, 0, 3), hello}, []int{0, 19}},
		{"message in pieces", 0, [][]byte{header(10, frameTypeData, 0, 3), hello[:2], hello[2:7], hello[7:]}, []int{0, 0, 0, 19}},
		{"message over two frames", 0, [][]byte{header(4, frameTypeData, 0, 3), hello[:4], header(6, frameTypeData, 0, 3), hello[4:]}, []int{0, 0, 0, 28}},
		{"frames of two streams", 0, [][]byte{header(4, frameTypeData, 0, 3), hello[:4], header(10, frameTypeData, 0, 5), hello, header(6, frameTypeData, 0, 3), hello[4:]}, []int{0, 0, 0, 32, 32, 47}},
		{"held frame, then control frame", 0, [][]byte{header(4, frameTypeData, 0, 3), hello[:4], header(4, 0x8, 0, 0)}, []int{0, 0, 22}},
		{"held frame, then END_STREAM", 0, [][]byte{header(4, frameTypeData, 0, 3), hello[:4], header(0, frameTypeData, flagDataEndStream, 3)}, []int{0, 0, 22}},
		{"END_STREAM mid-message", 0, [][]byte{header(4, frameTypeData, flagDataEndStream, 3), hello[:4]}, []int{0, 13}},
		{"empty message", 0, [][]byte{header(5, frameTypeData, 0, 3), msg("")}, []int{0, 14}},
		{"held bytes reach maxHeld", 20, [][]byte{header(4, frameTypeData, 0, 3), hello[:4], header(3, frameTypeData, 0, 3), hello[4:7], header(3, frameTypeData, 0, 3), hello[7:]}, []int{0, 0, 0, 25, 25, 37}},
		{"zero-length DATA", 0, [][]byte{header(0, frameTypeData, 1, 3)}, []int{9}},
		{"9-byte non-DATA header", 0, [][]byte{header(5, 4, 0, 0)}, []int{9}},
		{"whole DATA frame in one write", 0, [][]byte{append(header(2, frameTypeData, 0, 1), 'h', 'i')}, []int{11}},
		{"overshoot, then one frame at a time", 0, [][]byte{header(4, frameTypeData, 0, 3), hello, header(2, frameTypeData, 0, 3), []byte("xy")}, []int{0, 19, 19, 30}},
	} {
		rec := &recConn{}
		c := newFrameConn(rec, tc.maxHeld, false)
		for i, w := range tc.writes {
			if n, err := c.Write(w); n != len(w) || err != nil {
				t.Errorf("%s: Write #%d (%d bytes) = %d, %v", tc.name, i, len(w), n, err)
			}
			if got := rec.got.Len(); got != tc.want[i] {
				t.Errorf("%s: after Write #%d: %d bytes on the conn, want %d", tc.name, i, got, tc.want[i])
			}
		}
		if want := bytes.Join(tc.writes, nil); !bytes.Equal(rec.got.Bytes(), want) {
			t.Errorf("%s: conn got %q, want %q", tc.name, rec.got.Bytes(), want)
		}
	}
}

// TestFrameConnWriteError checks that a failed write of held frames
// reports the error and how many of the last Write's bytes went out, and
// that the connection stays failed.
func TestFrameConnWriteError(t *testing.T) {
	for _, tc := range []struct {
		fail  int // which underlying Write fails (header, piece, last piece)
		wantN int // bytes of the last Write reported written
	}{{1, 0}, {2, 0}, {3, 3}} {
		rec := &recConn{fail: tc.fail}
		c := newFrameConn(rec, 0, false)
		c.Write(header(11, frameTypeData, 0, 1))
		c.Write([]byte{0, 0, 0, 0, 6})
		n, err := c.Write([]byte("efghij"))
		if err == nil || n != tc.wantN {
			t.Errorf("failing underlying Write #%d: last Write = %d, %v; want %d and the error", tc.fail, n, err, tc.wantN)
		}
		if n, err2 := c.Write(header(0, 0x4, 0, 0)); n != 0 || err2 != err {
			t.Errorf("failing underlying Write #%d: next Write = %d, %v; want 0, %v", tc.fail, n, err2, err)
		}
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := lis.Accept(); ch <- res{c, err} }()
	client, err = net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		client.Close()
		t.Fatal(r.err)
	}
	t.Cleanup(func() { client.Close(); r.c.Close() })
	return client, r.c
}

// TestFrameConnTCP replays loopySim's Writes over loopback TCP through a
// writing frameConn (real writev) and reads them back through a reading
// one (readv), both the way gRPC's framer reads (header, then payload) and
// in random-sized Reads; the bytes must equal the written ones.
func TestFrameConnTCP(t *testing.T) {
	for _, framed := range []bool{true, false} {
		t.Run(fmt.Sprintf("framed=%v", framed), func(t *testing.T) {
			sim := newSim(t, 7, 1<<20)
			sim.maxFrame = 1 << 14
			sim.preface = !framed // the framed reader needs frames only
			sim.run(3, 40)
			cl, sv := tcpPair(t)
			w := newFrameConn(cl, 1<<20, false)
			r := newFrameConn(sv, 0, true)
			var wg sync.WaitGroup
			var werr error
			wg.Go(func() {
				for _, b := range sim.log {
					if _, err := w.Write(b); err != nil {
						werr = err
						return
					}
				}
				werr = cl.(*net.TCPConn).CloseWrite()
			})
			var got bytes.Buffer
			var err error
			if framed {
				err = readFrames(r, &got)
			} else {
				err = readRandom(r, &got, rand.New(rand.NewPCG(3, 3)))
			}
			wg.Wait()
			if werr != nil || err != nil {
				t.Fatalf("write error %v, read error %v", werr, err)
			}
			if want := sim.want.Bytes(); !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("read %d bytes, want the %d written (first difference at %d)", got.Len(), len(want), firstDiff(got.Bytes(), want))
			}
		})
	}
}

// readFrames reads like grpc-go's framer with no read buffer: io.ReadFull
// of each 9-byte header, then of its payload, until EOF.
func readFrames(r io.Reader, out *bytes.Buffer) error {
	var hdr [frameHeaderLen]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("header at byte %d: %w", out.Len(), err)
		}
		out.Write(hdr[:])
		p := make([]byte, frameLen(hdr[:]))
		if _, err := io.ReadFull(r, p); err != nil {
			return fmt.Errorf("payload of %d bytes at byte %d: %w", len(p), out.Len(), err)
		}
		out.Write(p)
	}
}

func readRandom(r io.Reader, out *bytes.Buffer, rng *rand.Rand) error {
	for {
		p := make([]byte, 1+rng.IntN(20000))
		n, err := r.Read(p)
		out.Write(p[:n])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestFrameConnReadDeadline checks that the readv side honours read
// deadlines (gRPC sets one when it closes a transport) and that data
// arriving later is still read whole.
func TestFrameConnReadDeadline(t *testing.T) {
	cl, sv := tcpPair(t)
	r := newFrameConn(sv, 0, true)
	r.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	var hdr [frameHeaderLen]byte
	_, err := r.Read(hdr[:])
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	r.SetReadDeadline(time.Time{})
	frame := append(header(3, frameTypeData, 0, 1), 'a', 'b', 'c')
	if _, err := cl.Write(frame); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	var got bytes.Buffer
	if err := readFrames(r, &got); err != nil || !bytes.Equal(got.Bytes(), frame) {
		t.Fatalf("after the deadline: read %q, %v; want %q", got.Bytes(), err, frame)
	}
}
