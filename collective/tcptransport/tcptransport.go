package tcptransport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
	"unsafe"

	"github.com/loomtrain/loom/collective"
)

// Options configures a Transport.
type Options struct {
	Rank     int
	Addrs    []string     // Addrs[r] is rank r's host:port
	Listener net.Listener // optional; else listen on Addrs[Rank]
	Channels int          // connections per peer; 0 means 2
}

// Transport implements collective.Transport over TCP.
type Transport struct {
	o       Options
	world   int
	lis     net.Listener
	closing chan struct{}
	once    sync.Once
	wg      sync.WaitGroup

	mu    sync.Mutex // guards out, in, conns
	out   map[lane]*outConn
	in    map[lane]*inConn
	conns []net.Conn
}

type lane struct{ peer, ch int }

type outConn struct {
	mu   sync.Mutex // one Send at a time; held while dialling
	conn net.Conn
	err  error
}

type inConn struct {
	ready chan struct{} // closed when conn is set
	conn  net.Conn
	hdr   []byte
	err   error // lane broken
}

var _ collective.Transport = (*Transport)(nil)

// New starts rank o.Rank's listener.
func New(o Options) (*Transport, error) {
	if len(o.Addrs) < 1 || o.Rank < 0 || o.Rank >= len(o.Addrs) {
		return nil, fmt.Errorf("tcptransport: Options.Rank %d with %d addresses", o.Rank, len(o.Addrs))
	}
	if o.Channels == 0 {
		o.Channels = 2
	}
	lis := o.Listener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", o.Addrs[o.Rank]); err != nil {
			return nil, fmt.Errorf("tcptransport: rank %d: listen: %w", o.Rank, err)
		}
	}
	t := &Transport{o: o, world: len(o.Addrs), lis: lis, closing: make(chan struct{}),
		out: map[lane]*outConn{}, in: map[lane]*inConn{}}
	t.wg.Go(t.accept)
	return t, nil
}

func (t *Transport) accept() {
	for {
		c, err := t.lis.Accept()
		if err != nil {
			return
		}
		var hello [8]byte
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, hello[:]); err != nil {
			c.Close()
			continue
		}
		c.SetReadDeadline(time.Time{})
		from, ch := int(le32(hello[:4])), int(le32(hello[4:]))
		if t.check(from, ch) != nil {
			c.Close()
			continue
		}
		in := t.inbound(from, ch)
		t.mu.Lock()
		select {
		case <-t.closing:
			c.Close()
		case <-in.ready:
			c.Close() // a second connection for the lane
		default:
			in.conn = c
			t.conns = append(t.conns, c)
			close(in.ready)
		}
		t.mu.Unlock()
	}
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func put32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

func (t *Transport) inbound(from, ch int) *inConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := lane{from, ch}
	if t.in[k] == nil {
		t.in[k] = &inConn{ready: make(chan struct{}), hdr: make([]byte, 32+collective.MaxJobLen)}
	}
	return t.in[k]
}

// Addr is the listening address.
func (t *Transport) Addr() net.Addr { return t.lis.Addr() }

// Rank implements collective.Transport.
func (t *Transport) Rank() int { return t.o.Rank }

// World implements collective.Transport.
func (t *Transport) World() int { return t.world }

// Channels implements collective.Transport.
func (t *Transport) Channels() int { return t.o.Channels }

func (t *Transport) check(peer, ch int) error {
	return collective.CheckPeer("tcptransport", t.o.Rank, t.world, t.o.Channels, peer, ch)
}

func (t *Transport) closed() bool {
	select {
	case <-t.closing:
		return true
	default:
		return false
	}
}

func f32bytes(p []float32) []byte {
	if len(p) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&p[0])), len(p)*4)
}

// Send implements collective.Transport.
func (t *Transport) Send(ctx context.Context, to, ch int, h collective.Header, payload []float32) error {
	if err := t.check(to, ch); err != nil {
		return err
	}
	if t.closed() {
		return collective.ErrClosed
	}
	t.mu.Lock()
	o := t.out[lane{to, ch}]
	if o == nil {
		o = &outConn{}
		t.out[lane{to, ch}] = o
	}
	t.mu.Unlock()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	if o.conn == nil {
		c, err := t.dial(ctx, to, ch)
		if err != nil {
			return err
		}
		o.conn = c
	}
	stop := context.AfterFunc(ctx, func() { o.conn.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	h.Len = uint32(len(payload))
	bufs := net.Buffers{collective.AppendHeader(nil, h), f32bytes(payload)}
	if _, err := bufs.WriteTo(o.conn); err != nil {
		switch {
		case t.closed():
			err = collective.ErrClosed
		case ctx.Err() != nil:
			err = ctx.Err()
		default:
			err = fmt.Errorf("tcptransport: rank %d: send to rank %d channel %d: %w (%v)", t.o.Rank, to, ch, collective.ErrPeerClosed, err)
		}
		o.err = err
		return err
	}
	return nil
}

// dial connects to the peer, retrying while it is not listening yet.
func (t *Transport) dial(ctx context.Context, to, ch int) (net.Conn, error) {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", t.o.Addrs[to])
		if err == nil {
			var hello [8]byte
			put32(hello[:4], uint32(t.o.Rank))
			put32(hello[4:], uint32(ch))
			if _, err = c.Write(hello[:]); err != nil {
				c.Close()
				return nil, fmt.Errorf("tcptransport: rank %d: hello to rank %d: %w", t.o.Rank, to, err)
			}
			t.mu.Lock()
			if t.closed() {
				t.mu.Unlock()
				c.Close()
				return nil, collective.ErrClosed
			}
			t.conns = append(t.conns, c)
			t.mu.Unlock()
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.closing:
			return nil, collective.ErrClosed
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Recv implements collective.Transport.
func (t *Transport) Recv(ctx context.Context, from, ch int, dst []float32) (collective.Header, error) {
	if err := t.check(from, ch); err != nil {
		return collective.Header{}, err
	}
	if t.closed() {
		return collective.Header{}, collective.ErrClosed
	}
	in := t.inbound(from, ch)
	select {
	case <-in.ready:
	case <-ctx.Done():
		return collective.Header{}, ctx.Err()
	case <-t.closing:
		return collective.Header{}, collective.ErrClosed
	}
	if in.err != nil {
		return collective.Header{}, in.err
	}
	stop := context.AfterFunc(ctx, func() { in.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) (collective.Header, error) {
		switch {
		case t.closed():
			err = collective.ErrClosed
		case ctx.Err() != nil:
			err = ctx.Err()
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed):
			err = fmt.Errorf("tcptransport: rank %d: recv from rank %d channel %d: %w (%v)", t.o.Rank, from, ch, collective.ErrPeerClosed, err)
		default:
			err = fmt.Errorf("tcptransport: rank %d: recv from rank %d channel %d: %w (%v)", t.o.Rank, from, ch, collective.ErrPeerClosed, err)
		}
		in.err = err
		return collective.Header{}, err
	}
	if _, err := io.ReadFull(in.conn, in.hdr[:32]); err != nil {
		return fail(err)
	}
	h, jl, err := collective.ParseHeaderFixed(in.hdr[:32])
	if err != nil {
		return fail(err)
	}
	if _, err := io.ReadFull(in.conn, in.hdr[32:32+jl]); err != nil {
		return fail(err)
	}
	h.Job = string(in.hdr[32 : 32+jl])
	if int(h.Len) > len(dst) {
		if _, err := io.CopyN(io.Discard, in.conn, int64(h.Len)*4); err != nil {
			return fail(err)
		}
		return collective.Header{}, fmt.Errorf("tcptransport: rank %d: recv from rank %d channel %d: %d elements into %d: %w",
			t.o.Rank, from, ch, h.Len, len(dst), collective.ErrTooLarge)
	}
	if _, err := io.ReadFull(in.conn, f32bytes(dst[:h.Len])); err != nil {
		return fail(err)
	}
	return h, nil
}

// Close implements collective.Transport: it closes the listener and every
// connection and waits for the accept loop to exit.
func (t *Transport) Close() error {
	t.once.Do(func() {
		t.mu.Lock()
		close(t.closing)
		conns := t.conns
		t.mu.Unlock()
		t.lis.Close()
		for _, c := range conns {
			c.Close()
		}
		t.wg.Wait()
	})
	return nil
}
