package grpctransport_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/collective/grpctransport"
	"github.com/loomtrain/loom/collective/inproc"
	"github.com/loomtrain/loom/collective/transporttest"
)

// newRing starts world gRPC transports on 127.0.0.1 free ports.
func newRing(t testing.TB, world, channels int, mod func(r int, o *grpctransport.Options)) []*grpctransport.Transport {
	t.Helper()
	lis := make([]net.Listener, world)
	addrs := make([]string, world)
	for r := range lis {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis[r], addrs[r] = l, l.Addr().String()
	}
	ts := make([]*grpctransport.Transport, world)
	for r := range ts {
		o := grpctransport.Options{Rank: r, Addrs: addrs, Listener: lis[r], Channels: channels,
			StreamWindow: 4 << 20, ConnWindow: 8 << 20, BufferSize: 64 << 10, CloseGrace: 200 * time.Millisecond}
		if mod != nil {
			mod(r, &o)
		}
		tr, err := grpctransport.New(o)
		if err != nil {
			t.Fatal(err)
		}
		ts[r] = tr
	}
	return ts
}

func asTransports(ts []*grpctransport.Transport) []collective.Transport {
	out := make([]collective.Transport, len(ts))
	for i, t := range ts {
		out[i] = t
	}
	return out
}

func TestConformance(t *testing.T) {
	fds := transporttest.OpenFDs()
	before := runtime.NumGoroutine()
	transporttest.Run(t, func(t *testing.T, world, channels int) []collective.Transport {
		return asTransports(newRing(t, world, channels, nil))
	})
	transporttest.CheckNoFDLeaks(t, fds)
	transporttest.CheckNoLeaks(t, before)
}

// TestConformanceDataPaths runs the suite on the data paths that are not the
// default (DefaultDataPath, run by TestConformance).
func TestConformanceDataPaths(t *testing.T) {
	for _, dp := range []string{grpctransport.DataPathBuffered, grpctransport.DataPathWritev} {
		t.Run(dp, func(t *testing.T) {
			transporttest.Run(t, func(t *testing.T, world, channels int) []collective.Transport {
				return asTransports(newRing(t, world, channels, func(_ int, o *grpctransport.Options) { o.DataPath = dp }))
			})
		})
	}
}

func TestBadDataPath(t *testing.T) {
	_, err := grpctransport.New(grpctransport.Options{Addrs: []string{"127.0.0.1:0"}, DataPath: "mmap"})
	if err == nil || !strings.Contains(err.Error(), "DataPath") {
		t.Errorf("New with DataPath \"mmap\": %v, want an error naming Options.DataPath", err)
	}
}

func TestConformanceProtoCodec(t *testing.T) {
	transporttest.Run(t, func(t *testing.T, world, channels int) []collective.Transport {
		return asTransports(newRing(t, world, channels, func(_ int, o *grpctransport.Options) { o.Codec = "proto" }))
	})
}

// certs makes a CA and a certificate for 127.0.0.1 signed by it, usable as
// both server and client certificate.
func certs(t *testing.T) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "loom test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "loom worker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func mtls(pool *x509.CertPool, cert tls.Certificate) func(int, *grpctransport.Options) {
	return func(_ int, o *grpctransport.Options) {
		o.ServerTLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
		o.ClientTLS = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}
	}
}

// TestMutualTLSAllReduce runs an all-reduce over mutual TLS, and checks that
// a rank without a client certificate is refused.
func TestMutualTLSAllReduce(t *testing.T) {
	pool, cert := certs(t)
	ts := newRing(t, 3, 2, mtls(pool, cert))
	allReduce(t, ts, 3000)

	// A client that presents no certificate cannot deliver anything.
	bad := newRing(t, 2, 1, func(r int, o *grpctransport.Options) {
		mtls(pool, cert)(r, o)
		if r == 0 {
			o.ClientTLS = &tls.Config{RootCAs: pool}
		}
	})
	defer bad[0].Close()
	defer bad[1].Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go bad[0].Send(ctx, 1, 0, collective.Header{}, []float32{1})
	if _, err := bad[1].Recv(ctx, 0, 0, make([]float32, 1)); err == nil {
		t.Fatal("Recv from a rank without a client certificate succeeded")
	}
}

func allReduce(t *testing.T, ts []*grpctransport.Transport, n int) {
	t.Helper()
	world := len(ts)
	comms := make([]*collective.Comm, world)
	for r, tr := range ts {
		c, err := collective.New(tr, collective.Config{Job: "grpc", Generation: 2, SliceBytes: 4096})
		if err != nil {
			t.Fatal(err)
		}
		comms[r] = c
	}
	bufs := make([][]float32, world)
	var wg sync.WaitGroup
	errs := make([]error, world)
	for r, c := range comms {
		bufs[r] = make([]float32, n)
		for j := range bufs[r] {
			bufs[r][j] = float32(r*n + j)
		}
		wg.Go(func() { errs[r] = c.AllReduce(context.Background(), bufs[r], collective.Sum) })
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: AllReduce: %v", r, err)
		}
	}
	for r := range bufs {
		for j, v := range bufs[r] {
			want := float32(0)
			for q := range world {
				want += float32(q*n + j)
			}
			if v != want {
				t.Fatalf("rank %d element %d = %v, want %v", r, j, v, want)
			}
		}
	}
	for _, c := range comms {
		c.Close()
	}
}

func TestAllReduceOverGRPC(t *testing.T) {
	before := runtime.NumGoroutine()
	allReduce(t, newRing(t, 4, 2, nil), 100_003)
	transporttest.CheckNoLeaks(t, before)
}

// TestKilledRank: rank 1 aborts (as a crashed process would) in the middle of
// a run of all-reduces over gRPC. Every rank returns an error naming a peer
// and the operation, and no goroutine or connection is left behind.
func TestKilledRank(t *testing.T) {
	fds := transporttest.OpenFDs()
	before := runtime.NumGoroutine()
	const world = 4
	ts := newRing(t, world, 2, nil)
	errs := make([]error, world)
	var wg sync.WaitGroup
	for r, tr := range ts {
		c, _ := collective.New(tr, collective.Config{Job: "j", Generation: 1, Timeout: 3 * time.Second, SliceBytes: 8192})
		wg.Go(func() {
			defer c.Close()
			buf := make([]float32, 20000)
			for i := range 1000 {
				if r == 1 && i == 2 {
					tr.Abort()
				}
				if err := c.AllReduce(context.Background(), buf, collective.Sum); err != nil {
					errs[r] = err
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("ranks still running 30s after rank 1 died")
	}
	for r, err := range errs {
		var oe *collective.OpError
		if !errors.As(err, &oe) || oe.Op != collective.OpAllReduce {
			t.Errorf("rank %d: err = %v, want an allreduce *OpError", r, err)
			continue
		}
		t.Logf("rank %d: %v", r, err)
	}
	if !errors.Is(errs[2], collective.ErrPeerClosed) {
		t.Errorf("rank 2 (receives from rank 1): %v, want ErrPeerClosed", errs[2])
	}
	transporttest.CheckNoFDLeaks(t, fds)
	transporttest.CheckNoLeaks(t, before)
}

// TestRingAttentionOverGRPC: causal zigzag ring attention over 4 gRPC ranks
// gives bit-for-bit the results of the same ring over the in-process
// transport (which the collective tests check against dense attention).
func TestRingAttentionOverGRPC(t *testing.T) {
	const T, h, d, world = 64, 2, 8, 4
	x := make([]float32, T*h*d)
	for i := range x {
		x[i] = float32(i%13)/7 - 0.8
	}
	run := func(trs []collective.Transport) [][]float32 {
		out := make([][]float32, world)
		var wg sync.WaitGroup
		errs := make([]error, world)
		for r, tr := range trs {
			wg.Go(func() {
				c, _ := collective.New(tr, collective.Config{Job: "ra", SliceBytes: 1024})
				defer c.Close()
				l := collective.Zigzag
				cfg := collective.RingAttnConfig{Total: T, Heads: h, HeadDim: d, Causal: true, Layout: l}
				q := l.Shard(x, h*d, T, world, r)
				n := T / world
				o, lse := make([]float32, n*h*d), make([]float32, n*h)
				if errs[r] = c.RingAttentionForward(context.Background(), cfg, q, q, q, o, lse); errs[r] != nil {
					return
				}
				dq, dk, dv := make([]float32, n*h*d), make([]float32, n*h*d), make([]float32, n*h*d)
				errs[r] = c.RingAttentionBackward(context.Background(), cfg, q, q, q, o, lse, q, dq, dk, dv)
				out[r] = append(append(append(o, dq...), dk...), dv...)
			})
		}
		wg.Wait()
		failed := false
		for r, err := range errs {
			if err != nil {
				t.Errorf("rank %d: %v", r, err)
				failed = true
			}
		}
		if failed {
			t.FailNow()
		}
		return out
	}
	want := run(inproc.NewNetwork(world, 1).Transports())
	got := run(asTransports(newRing(t, world, 1, nil)))
	for r := range world {
		for i := range want[r] {
			if math.Float32bits(got[r][i]) != math.Float32bits(want[r][i]) {
				t.Fatalf("rank %d element %d: gRPC %v, in-process %v", r, i, got[r][i], want[r][i])
			}
		}
	}
}

// TestSilentRankOverGRPC: rank 2 is up but never joins the all-reduce. The
// other ranks fail within the timeout (no hang, whatever gRPC's flow control
// is doing), and nothing is left running.
func TestSilentRankOverGRPC(t *testing.T) {
	fds := transporttest.OpenFDs()
	before := runtime.NumGoroutine()
	const world = 3
	ts := newRing(t, world, 2, nil)
	errs := make([]error, world)
	var wg sync.WaitGroup
	for r, tr := range ts {
		c, _ := collective.New(tr, collective.Config{Job: "j", Timeout: 300 * time.Millisecond, SliceBytes: 1 << 16})
		if r == 2 {
			defer c.Close()
			continue
		}
		wg.Go(func() {
			defer c.Close()
			errs[r] = c.AllReduce(context.Background(), make([]float32, 1<<20), collective.Sum)
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("ranks still running 30s after rank 2 went silent")
	}
	for r := range 2 {
		var oe *collective.OpError
		if !errors.As(errs[r], &oe) || oe.Op != collective.OpAllReduce {
			t.Errorf("rank %d: err = %v, want an allreduce *OpError", r, errs[r])
		}
	}
	ts[2].Close()
	transporttest.CheckNoLeaks(t, before)
	transporttest.CheckNoFDLeaks(t, fds)
}

// BenchmarkPointToPoint streams 4 MiB messages from rank 0 to rank 1 over
// one connection with each data path, and reports the process CPU time per
// byte (cpu-ns/B) next to the rate: what the data path costs.
func BenchmarkPointToPoint(b *testing.B) {
	for _, dp := range []string{grpctransport.DataPathBuffered, grpctransport.DataPathWritev, grpctransport.DataPathReadv} {
		b.Run(dp, func(b *testing.B) {
			ts := newRing(b, 2, 1, func(_ int, o *grpctransport.Options) {
				o.DataPath, o.BufferSize, o.StreamWindow, o.ConnWindow = dp, 0, 0, 0
			})
			defer func() {
				for _, tr := range ts {
					tr.Close()
				}
			}()
			ctx := context.Background()
			src, dst := make([]float32, 1<<20), make([]float32, 1<<20)
			var wg sync.WaitGroup
			b.SetBytes(4 << 20)
			cpu0 := processCPU()
			b.ResetTimer()
			wg.Go(func() {
				for i := range b.N {
					if err := ts[0].Send(ctx, 1, 0, collective.Header{Job: "b", Seq: uint64(i)}, src); err != nil {
						b.Error(err)
						return
					}
				}
			})
			for range b.N {
				if _, err := ts[1].Recv(ctx, 0, 0, dst); err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N)/(4<<20), "cpu-ns/B")
		})
	}
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestReusedSendBuffer sends messages larger than the flow-control windows
// from one buffer that the sender rewrites as soon as each Send returns
// (which it may: the payload is released), with a receiver that lags (a
// queue of one): every message must arrive as it was when sent, and no
// data path may stall on frames it holds.
func TestReusedSendBuffer(t *testing.T) {
	for _, dp := range []string{grpctransport.DataPathBuffered, grpctransport.DataPathWritev, grpctransport.DataPathReadv} {
		t.Run(dp, func(t *testing.T) {
			ts := newRing(t, 2, 1, func(_ int, o *grpctransport.Options) {
				o.DataPath, o.StreamWindow, o.ConnWindow, o.QueueDepth = dp, 1<<20, 1<<20, 1
			})
			defer ts[0].Close()
			defer ts[1].Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			const msgs, n = 12, 3 << 18 // 3 MiB messages
			var serr error
			var wg sync.WaitGroup
			wg.Go(func() {
				buf := make([]float32, n)
				for m := range msgs {
					for j := range buf {
						buf[j] = float32(m*n + j)
					}
					if serr = ts[0].Send(ctx, 1, 0, collective.Header{Seq: uint64(m)}, buf[:n-m]); serr != nil {
						return
					}
				}
			})
			dst := make([]float32, n)
			for m := range msgs {
				h, err := ts[1].Recv(ctx, 0, 0, dst)
				if err != nil {
					t.Fatalf("message %d: %v", m, err)
				}
				if h.Seq != uint64(m) || int(h.Len) != n-m {
					t.Fatalf("message %d: header seq %d len %d, want seq %d len %d", m, h.Seq, h.Len, m, n-m)
				}
				for j, v := range dst[:n-m] {
					if v != float32(m*n+j) {
						t.Fatalf("message %d element %d = %v, want %v", m, j, v, float32(m*n+j))
					}
				}
				time.Sleep(time.Millisecond) // lag
			}
			wg.Wait()
			if serr != nil {
				t.Fatal(serr)
			}
		})
	}
}
