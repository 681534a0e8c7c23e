package grpctransport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/loomtrain/loom/collective"
)

// Defaults of Options.
const (
	DefaultChannels     = 2
	DefaultStreamWindow = 64 << 20
	DefaultConnWindow   = 128 << 20
	DefaultBufferSize   = 1 << 20
	DefaultQueueDepth   = 8
	DefaultCloseGrace   = time.Second
	maxMessage          = 1 << 30
)

// Options configures a Transport.
type Options struct {
	Rank  int      // this rank
	Addrs []string // Addrs[r] is rank r's host:port; len(Addrs) is the world size
	// Listener, if set, is used instead of listening on Addrs[Rank] (tests
	// listen on 127.0.0.1:0 first to learn the ports). New takes ownership.
	Listener net.Listener
	Channels int // connections per peer; 0 means DefaultChannels
	// ServerTLS and ClientTLS enable TLS; set both or neither. For mutual TLS
	// the server config sets ClientAuth = tls.RequireAndVerifyClientCert and
	// ClientCAs, the client config Certificates and RootCAs.
	ServerTLS, ClientTLS *tls.Config
	StreamWindow         int32 // per-stream flow-control window; 0 means DefaultStreamWindow
	ConnWindow           int32 // per-connection window; 0 means DefaultConnWindow
	BufferSize           int   // gRPC read and write buffer size; 0 means DefaultBufferSize
	QueueDepth           int   // received messages buffered per lane; 0 means DefaultQueueDepth
	// CloseGrace bounds how long Close waits for peers to take the messages
	// already sent; 0 means DefaultCloseGrace.
	CloseGrace time.Duration
	// Codec is "raw" (default) or "proto" (benchmark baseline).
	Codec string
	// DataPath is how gRPC's HTTP/2 frames move between gRPC and the socket
	// when TLS is off (with TLS it is always DataPathBuffered): "" means
	// DefaultDataPath. See the DataPath constants.
	DataPath string
}

// Data paths (Options.DataPath); see frameConn.
const (
	// DataPathBuffered is gRPC's own: BufferSize-byte read and write
	// buffers that every frame is copied through.
	DataPathBuffered = "buffered"
	// DataPathWritev writes each DATA frame's header and payload with one
	// writev and no copy (gRPC's write buffer off); reads as buffered.
	DataPathWritev = "writev"
	// DataPathReadv is DataPathWritev plus reads without gRPC's read
	// buffer: each frame's payload and the next frame's header in one
	// readv, straight into gRPC's frame buffer (Linux; elsewhere plain
	// unbuffered reads).
	DataPathReadv = "readv"
	// DefaultDataPath is the data path of Options.DataPath "".
	DefaultDataPath = DataPathReadv
)

// Transport is a collective.Transport over gRPC. See the package doc.
type Transport struct {
	o     Options
	world int
	proto bool

	srv     *grpc.Server
	lis     net.Listener
	serveWG sync.WaitGroup

	closing   chan struct{}
	closeOnce sync.Once

	mu  sync.Mutex // guards out, in and conns
	out map[lane]*outbound
	in  map[lane]*inbound
	// conns are closed by Close; one per (peer, channel)
	conns []*grpc.ClientConn
	wg    sync.WaitGroup // outbound watcher goroutines
}

type lane struct{ peer, ch int }

var (
	_ collective.Transport      = (*Transport)(nil)
	_ collective.ReduceReceiver = (*Transport)(nil)
)

const (
	serviceName = "loom.collective.v1.Ring"
	methodPush  = "/" + serviceName + "/Push"
	mdFrom      = "loom-from-rank"
	mdChannel   = "loom-channel"
)

// New starts rank o.Rank's server and returns its transport. Connections
// to peers are made on first use, waiting (within the Send's context) for a
// peer whose server is not up yet.
func New(o Options) (*Transport, error) {
	if len(o.Addrs) < 1 || o.Rank < 0 || o.Rank >= len(o.Addrs) {
		return nil, fmt.Errorf("grpctransport: Options.Rank %d with %d addresses", o.Rank, len(o.Addrs))
	}
	if (o.ServerTLS == nil) != (o.ClientTLS == nil) {
		return nil, errors.New("grpctransport: Options.ServerTLS and ClientTLS: set both or neither")
	}
	if o.Channels == 0 {
		o.Channels = DefaultChannels
	}
	if o.StreamWindow == 0 {
		o.StreamWindow = DefaultStreamWindow
	}
	if o.ConnWindow == 0 {
		o.ConnWindow = DefaultConnWindow
	}
	if o.BufferSize == 0 {
		o.BufferSize = DefaultBufferSize
	}
	if o.QueueDepth == 0 {
		o.QueueDepth = DefaultQueueDepth
	}
	if o.CloseGrace == 0 {
		o.CloseGrace = DefaultCloseGrace
	}
	if o.Channels < 1 || o.QueueDepth < 1 || o.BufferSize < 0 {
		return nil, fmt.Errorf("grpctransport: Options: Channels %d, QueueDepth %d, BufferSize %d", o.Channels, o.QueueDepth, o.BufferSize)
	}
	var proto bool
	switch o.Codec {
	case "", "raw":
	case "proto":
		proto = true
	default:
		return nil, fmt.Errorf("grpctransport: Options.Codec %q: want raw or proto", o.Codec)
	}
	if o.DataPath == "" {
		o.DataPath = DefaultDataPath
	}
	switch o.DataPath {
	case DataPathBuffered, DataPathWritev, DataPathReadv:
	default:
		return nil, fmt.Errorf("grpctransport: Options.DataPath %q: want %s, %s or %s", o.DataPath, DataPathBuffered, DataPathWritev, DataPathReadv)
	}
	if o.ServerTLS != nil {
		o.DataPath = DataPathBuffered
	}
	t := &Transport{o: o, world: len(o.Addrs), proto: proto, closing: make(chan struct{}),
		out: map[lane]*outbound{}, in: map[lane]*inbound{}}
	lis := o.Listener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", o.Addrs[o.Rank]); err != nil {
			return nil, fmt.Errorf("grpctransport: rank %d: listen on Addrs[%d]: %w", o.Rank, o.Rank, err)
		}
	}
	t.lis = lis
	wbuf, rbuf := t.bufferSizes()
	sopts := []grpc.ServerOption{
		grpc.StaticStreamWindowSize(o.StreamWindow), grpc.StaticConnWindowSize(o.ConnWindow),
		grpc.WriteBufferSize(wbuf), grpc.ReadBufferSize(rbuf),
		grpc.MaxRecvMsgSize(maxMessage), grpc.WaitForHandlers(true),
		experimental.BufferPool(&dirtyPool{}),
	}
	if !proto {
		sopts = append(sopts, grpc.ForceServerCodecV2(rawCodec{}))
	}
	if o.ServerTLS != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(o.ServerTLS)))
	} else if o.DataPath != DataPathBuffered {
		sopts = append(sopts, grpc.Creds(t.frameCreds(insecure.NewCredentials())))
	}
	t.srv = grpc.NewServer(sopts...)
	t.srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: serviceName,
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{
			StreamName:    "Push",
			Handler:       func(_ any, s grpc.ServerStream) error { return t.handle(s) },
			ClientStreams: true, ServerStreams: true,
		}},
	}, t)
	t.serveWG.Go(func() { t.srv.Serve(lis) })
	return t, nil
}

// bufferSizes are gRPC's write and read buffer sizes for the data path.
func (t *Transport) bufferSizes() (write, read int) {
	switch t.o.DataPath {
	case DataPathWritev:
		return 0, t.o.BufferSize
	case DataPathReadv:
		return 0, 0
	}
	return t.o.BufferSize, t.o.BufferSize
}

// frameCreds wraps inner for the data path (not DataPathBuffered). The
// write side holds at most an eighth of the smaller flow-control window
// (and at most defaultMaxHeld bytes); see frameConn. That bound assumes the
// peers use the same windows, as ranks started with the same Options do.
func (t *Transport) frameCreds(inner credentials.TransportCredentials) frameCreds {
	w := int(min(t.o.StreamWindow, t.o.ConnWindow))
	return frameCreds{TransportCredentials: inner, maxHeld: max(min(defaultMaxHeld, w/8), 1), readv: t.o.DataPath == DataPathReadv}
}

// Addr is the address the server listens on.
func (t *Transport) Addr() net.Addr { return t.lis.Addr() }

// Rank implements collective.Transport.
func (t *Transport) Rank() int { return t.o.Rank }

// World implements collective.Transport.
func (t *Transport) World() int { return t.world }

// Channels implements collective.Transport.
func (t *Transport) Channels() int { return t.o.Channels }

func (t *Transport) check(peer, ch int) error {
	return collective.CheckPeer("grpctransport", t.o.Rank, t.world, t.o.Channels, peer, ch)
}

func (t *Transport) isClosing() bool {
	select {
	case <-t.closing:
		return true
	default:
		return false
	}
}

// ---- sending ----

// outbound is the client stream to one (peer, channel).
type outbound struct {
	peer, ch int
	ready    chan struct{}     // closed once the stream is open (or failed to open)
	mu       sync.Mutex        // held by the one Send in flight, and by Close's CloseSend
	stream   grpc.ClientStream // set before ready is closed
	ctx      context.Context   // the stream's context
	cancel   context.CancelFunc
	ended    chan struct{} // closed when the server ends the stream (or it breaks)
	endErr   error         // set before ended is closed
	failed   error         // lane unusable after a failed Send (guarded by mu)
}

func (t *Transport) outbound(to, ch int) (*outbound, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.isClosing() {
		return nil, collective.ErrClosed
	}
	k := lane{to, ch}
	if o := t.out[k]; o != nil {
		return o, nil
	}
	creds := insecure.NewCredentials()
	if t.o.ClientTLS != nil {
		creds = credentials.NewTLS(t.o.ClientTLS)
	} else if t.o.DataPath != DataPathBuffered {
		creds = t.frameCreds(creds)
	}
	wbuf, rbuf := t.bufferSizes()
	// MaxRetryRPCBufferSize(0): gRPC keeps references to sent messages for
	// transparent retries until the stream is committed; with no retry
	// buffer it commits at once and releases each payload once written.
	callOpts := []grpc.CallOption{grpc.MaxCallRecvMsgSize(maxMessage), grpc.WaitForReady(true), grpc.MaxRetryRPCBufferSize(0)}
	if !t.proto {
		callOpts = append(callOpts, grpc.ForceCodecV2(rawCodec{}))
	}
	cc, err := grpc.NewClient(t.o.Addrs[to],
		grpc.WithTransportCredentials(creds),
		// Retries would buffer (and hold references to) sent payloads until
		// the stream commits, which a push stream never does by itself.
		grpc.WithDisableRetry(),
		grpc.WithStaticStreamWindowSize(t.o.StreamWindow), grpc.WithStaticConnWindowSize(t.o.ConnWindow),
		grpc.WithWriteBufferSize(wbuf), grpc.WithReadBufferSize(rbuf),
		grpc.WithDefaultCallOptions(callOpts...))
	if err != nil {
		return nil, fmt.Errorf("grpctransport: rank %d: dial rank %d at %q: %w", t.o.Rank, to, t.o.Addrs[to], err)
	}
	t.conns = append(t.conns, cc)
	o := &outbound{peer: to, ch: ch, ended: make(chan struct{}), ready: make(chan struct{})}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	o.ctx = metadata.AppendToOutgoingContext(o.ctx, mdFrom, strconv.Itoa(t.o.Rank), mdChannel, strconv.Itoa(ch))
	// The stream is opened in the background; the first Send waits for it
	// (the peer may not be up yet) within its own deadline.
	t.out[k] = o
	t.wg.Add(1)
	go t.open(cc, o)
	return o, nil
}

// open creates o's stream and then watches it: the server never sends, so
// RecvMsg returns only when the server ends the stream or it breaks.
func (t *Transport) open(cc *grpc.ClientConn, o *outbound) {
	defer t.wg.Done()
	s, err := cc.NewStream(o.ctx, &grpc.StreamDesc{StreamName: "Push", ClientStreams: true, ServerStreams: true}, methodPush)
	if err != nil {
		o.failed = err
		o.endErr = err
		close(o.ready)
		close(o.ended)
		return
	}
	// The server sends its headers at once; receiving them commits the
	// stream (see MaxRetryRPCBufferSize above).
	if _, err := s.Header(); err != nil {
		o.failed, o.endErr = err, err
		o.cancel()
		close(o.ready)
		close(o.ended)
		return
	}
	o.stream = s
	close(o.ready)
	var m wrapperspb.BytesValue
	var f inFrame
	if t.proto {
		o.endErr = s.RecvMsg(&m)
	} else {
		o.endErr = s.RecvMsg(&f)
	}
	o.cancel()
	close(o.ended)
}

// donePool is the mem.BufferPool of one sent payload: gRPC "returns" the
// payload to it once the transport has finished reading it, which is the
// signal that Send may return.
type donePool chan struct{}

func (p donePool) Get(n int) *[]byte { b := make([]byte, n); return &b }
func (p donePool) Put(*[]byte)       { close(p) }

func f32bytes(p []float32) []byte {
	if len(p) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&p[0])), len(p)*4)
}

// Send implements collective.Transport. With the raw codec the payload goes
// to gRPC without a copy and Send waits until gRPC has released it.
func (t *Transport) Send(ctx context.Context, to, ch int, h collective.Header, payload []float32) error {
	if err := t.check(to, ch); err != nil {
		return err
	}
	o, err := t.outbound(to, ch)
	if err != nil {
		return err
	}
	// On first use, wait for the stream to open, within ctx.
	select {
	case <-o.ready:
	case <-ctx.Done():
		o.cancel()
		return ctx.Err()
	case <-t.closing:
		return collective.ErrClosed
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.failed != nil {
		return t.sendErr(ctx, o, o.failed)
	}
	// A ctx that ends while gRPC blocks (flow control, dead peer) cancels
	// the stream, which unblocks it; the lane is then unusable.
	stop := context.AfterFunc(ctx, o.cancel)
	defer stop()
	h.Len = uint32(len(payload))
	hb := collective.AppendHeader(make([]byte, 0, collective.HeaderLen(h)), h)
	if t.proto {
		v := &wrapperspb.BytesValue{Value: append(hb, f32bytes(payload)...)}
		if err := o.stream.SendMsg(v); err != nil {
			o.failed = err
			return t.sendErr(ctx, o, err)
		}
		return nil
	}
	done := make(donePool)
	if err := o.stream.SendMsg(&outFrame{hdr: hb, payload: f32bytes(payload), done: done}); err != nil {
		o.failed = err
		return t.sendErr(ctx, o, err)
	}
	select {
	case <-done:
		return nil
	case <-o.ctx.Done():
		// The peer may have taken the message and closed the stream (it
		// finished its last operation) before this goroutine ran: when
		// both are ready, select picks either, so the release wins.
		select {
		case <-done:
			return nil
		default:
		}
		o.failed = o.ctx.Err()
		return t.sendErr(ctx, o, o.ctx.Err())
	}
}

func (t *Transport) sendErr(ctx context.Context, o *outbound, err error) error {
	switch {
	case t.isClosing():
		return collective.ErrClosed
	case ctx.Err() != nil:
		return ctx.Err()
	}
	select {
	case <-o.ended:
		if o.endErr != nil && o.endErr != io.EOF {
			err = o.endErr
		}
	default:
	}
	return fmt.Errorf("grpctransport: rank %d: send to rank %d channel %d: %w (%v)", t.o.Rank, o.peer, o.ch, collective.ErrPeerClosed, err)
}

// ---- receiving ----

// inbound is the receiving end of one (peer, channel): the server handler
// of the peer's stream queues frames, Recv takes them.
type inbound struct {
	queue    chan *inFrame
	ended    chan struct{} // closed by the handler after its last push
	endErr   error
	attached bool // guarded by Transport.mu
}

func (t *Transport) inbound(from, ch int) *inbound {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := lane{from, ch}
	in := t.in[k]
	if in == nil {
		in = &inbound{queue: make(chan *inFrame, t.o.QueueDepth), ended: make(chan struct{})}
		t.in[k] = in
	}
	return in
}

func (t *Transport) handle(s grpc.ServerStream) error {
	md, _ := metadata.FromIncomingContext(s.Context())
	from, err1 := strconv.Atoi(first(md.Get(mdFrom)))
	ch, err2 := strconv.Atoi(first(md.Get(mdChannel)))
	if err1 != nil || err2 != nil || t.check(from, ch) != nil {
		return fmt.Errorf("grpctransport: rank %d: stream with bad identity %q=%q %q=%q", t.o.Rank, mdFrom, md.Get(mdFrom), mdChannel, md.Get(mdChannel))
	}
	in := t.inbound(from, ch)
	t.mu.Lock()
	dup := in.attached
	in.attached = true
	t.mu.Unlock()
	if dup {
		return fmt.Errorf("grpctransport: rank %d: second stream from rank %d channel %d", t.o.Rank, from, ch)
	}
	defer close(in.ended)
	if err := s.SendHeader(nil); err != nil {
		in.endErr = err
		return err
	}
	for {
		f := &inFrame{}
		var err error
		if t.proto {
			var m wrapperspb.BytesValue
			if err = s.RecvMsg(&m); err == nil {
				err = f.parseProto(m.Value)
			}
		} else {
			err = s.RecvMsg(f)
		}
		if err != nil {
			in.endErr = err
			if err == io.EOF {
				return nil
			}
			return err
		}
		select {
		case in.queue <- f:
		case <-t.closing:
			f.free()
			in.endErr = collective.ErrClosed
			return nil
		}
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// Recv implements collective.Transport.
func (t *Transport) Recv(ctx context.Context, from, ch int, dst []float32) (collective.Header, error) {
	f, err := t.next(ctx, from, ch)
	if err != nil {
		return collective.Header{}, err
	}

	defer f.free()
	if int(f.h.Len) > len(dst) {
		return collective.Header{}, fmt.Errorf("grpctransport: rank %d: recv from rank %d channel %d: %d elements into %d: %w",
			t.o.Rank, from, ch, f.h.Len, len(dst), collective.ErrTooLarge)
	}
	f.copyTo(dst[:f.h.Len])
	return f.h, nil
}

// RecvAdd implements collective.ReduceReceiver: the payload is added into
// dst straight from gRPC's receive buffers.
func (t *Transport) RecvAdd(ctx context.Context, from, ch int, dst []float32) (collective.Header, error) {
	f, err := t.next(ctx, from, ch)
	if err != nil {
		return collective.Header{}, err
	}
	defer f.free()
	if int(f.h.Len) != len(dst) {
		return collective.Header{}, fmt.Errorf("grpctransport: rank %d: recv from rank %d channel %d: %d elements to add into %d: %w",
			t.o.Rank, from, ch, f.h.Len, len(dst), collective.ErrMismatch)
	}
	f.addTo(dst)
	return f.h, nil
}

// next waits for the next frame from (from, ch).
func (t *Transport) next(ctx context.Context, from, ch int) (*inFrame, error) {
	if err := t.check(from, ch); err != nil {
		return nil, err
	}
	if t.isClosing() {
		return nil, collective.ErrClosed
	}
	in := t.inbound(from, ch)
	select {
	case f := <-in.queue:
		return f, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.closing:
		return nil, collective.ErrClosed
	case <-in.ended:
		select {
		case f := <-in.queue:
			return f, nil
		default:
			return nil, fmt.Errorf("grpctransport: rank %d: recv from rank %d channel %d: %w (%v)",
				t.o.Rank, from, ch, collective.ErrPeerClosed, in.endErr)
		}
	}
}

// ---- closing ----

// Close implements collective.Transport. It first lets the peers take what
// was already sent (half-closing every idle outbound stream and waiting up
// to Options.CloseGrace for the peers to finish reading), then stops the
// server and closes every connection, and returns once all of the
// transport's goroutines have exited.
func (t *Transport) Close() error {
	t.shutdown(true)
	return nil
}

// Abort is Close without the grace period: for a failed collective, where
// the peers should learn at once that this rank is gone.
func (t *Transport) Abort() {
	t.shutdown(false)
}

func (t *Transport) shutdown(graceful bool) {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		close(t.closing)
		outs := make([]*outbound, 0, len(t.out))
		for _, o := range t.out {
			outs = append(outs, o)
		}
		conns := t.conns
		t.mu.Unlock()
		if graceful {
			deadline := time.NewTimer(t.o.CloseGrace)
			for _, o := range outs {
				select {
				case <-o.ready:
				default:
					o.cancel() // never opened
					continue
				}
				if o.mu.TryLock() {
					if o.failed == nil {
						o.stream.CloseSend()
					}
					o.mu.Unlock()
				} else {
					o.cancel() // a Send is blocked in it
				}
			}
			for _, o := range outs {
				select {
				case <-o.ended:
				case <-deadline.C:
				}
			}
			deadline.Stop()
		}
		for _, o := range outs {
			o.cancel()
		}
		t.srv.Stop()
		for _, cc := range conns {
			cc.Close()
		}
		t.wg.Wait()
		t.serveWG.Wait()
		// Release frames nobody will receive.
		t.mu.Lock()
		for _, in := range t.in {
		drain:
			for {
				select {
				case f := <-in.queue:
					f.free()
				default:
					break drain
				}
			}
		}
		t.mu.Unlock()
	})
}
