package transporttest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loomtrain/loom/collective"
)

// Factory builds world connected transports with channels lanes each.
type Factory func(t *testing.T, world, channels int) []collective.Transport

func closeAll(ts []collective.Transport) {
	for _, tr := range ts {
		tr.Close()
	}
}

func payload(seed uint64, n int) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	p := make([]float32, n)
	for i := range p {
		// Arbitrary bit patterns, NaNs included: a transport moves bits.
		p[i] = math.Float32frombits(r.Uint32())
	}
	return p
}

func sameBits(a, b []float32) int {
	if len(a) != len(b) {
		return 0
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

func hdr(seq uint64, step uint32) collective.Header {
	return collective.Header{Job: "conformance", Generation: 9, Seq: seq, Op: collective.OpTest, Step: step, Slice: step * 3}
}

// Run runs the conformance suite against the transports newRing builds.
func Run(t *testing.T, newRing Factory) {
	t.Run("Identity", func(t *testing.T) {
		ts := newRing(t, 3, 2)
		defer closeAll(ts)
		for r, tr := range ts {
			if tr.Rank() != r || tr.World() != 3 || tr.Channels() != 2 {
				t.Errorf("transport %d: Rank()=%d World()=%d Channels()=%d, want %d 3 2", r, tr.Rank(), tr.World(), tr.Channels(), r)
			}
		}
	})
	t.Run("OrderedExactDelivery", func(t *testing.T) { testOrdered(t, newRing) })
	t.Run("AllPairsConcurrently", func(t *testing.T) { testAllPairs(t, newRing) })
	t.Run("PayloadReusableAfterSend", func(t *testing.T) { testReuse(t, newRing) })
	t.Run("TooLarge", func(t *testing.T) { testTooLarge(t, newRing) })
	t.Run("RecvContextDeadline", func(t *testing.T) { testRecvDeadline(t, newRing) })
	t.Run("CloseUnblocksLocal", func(t *testing.T) { testCloseLocal(t, newRing) })
	t.Run("PeerCloseIsError", func(t *testing.T) { testPeerClose(t, newRing) })
	t.Run("RecvAdd", func(t *testing.T) { testRecvAdd(t, newRing) })
}

// testRecvAdd checks the optional collective.ReduceReceiver: RecvAdd must
// equal Recv followed by an element-wise add, bit for bit.
func testRecvAdd(t *testing.T, newRing Factory) {
	ts := newRing(t, 2, 1)
	defer closeAll(ts)
	rr, ok := ts[1].(collective.ReduceReceiver)
	if !ok {
		t.Skip("transport does not implement collective.ReduceReceiver")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := rand.New(rand.NewPCG(3, 3))
	for i, n := range []int{0, 1, 5, 4097, 1 << 17} {
		p, dst := make([]float32, n), make([]float32, n)
		want := make([]float32, n)
		for j := range p {
			p[j], dst[j] = float32(r.NormFloat64()), float32(r.NormFloat64())
			want[j] = dst[j] + p[j]
		}
		go ts[0].Send(ctx, 1, 0, hdr(uint64(i), 0), p)
		h, err := rr.RecvAdd(ctx, 0, 0, dst)
		if err != nil || h.Len != uint32(n) {
			t.Fatalf("RecvAdd #%d (%d elements): header %+v, err %v", i, n, h, err)
		}
		if at := sameBits(dst, want); at >= 0 {
			t.Fatalf("RecvAdd #%d (%d elements): element %d = %v, want %v", i, n, at, dst[at], want[at])
		}
	}
	go ts[0].Send(ctx, 1, 0, hdr(9, 0), make([]float32, 3))
	if _, err := rr.RecvAdd(ctx, 0, 0, make([]float32, 4)); !errors.Is(err, collective.ErrMismatch) {
		t.Errorf("RecvAdd of 3 elements into 4: err = %v, want ErrMismatch", err)
	}
}

func testOrdered(t *testing.T, newRing Factory) {
	ts := newRing(t, 2, 1)
	defer closeAll(ts)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sizes := []int{0, 1, 3, 255, 4096, 1 << 18}
	errc := make(chan error, 1)
	go func() {
		for i, n := range sizes {
			if err := ts[0].Send(ctx, 1, 0, hdr(uint64(i), uint32(i)), payload(uint64(i), n)); err != nil {
				errc <- fmt.Errorf("send #%d (%d elements): %w", i, n, err)
				return
			}
		}
		errc <- nil
	}()
	for i, n := range sizes {
		dst := make([]float32, n+5)
		h, err := ts[1].Recv(ctx, 0, 0, dst)
		if err != nil {
			t.Fatalf("Recv #%d: %v", i, err)
		}
		want := hdr(uint64(i), uint32(i))
		want.Len = uint32(n)
		if h != want {
			t.Errorf("Recv #%d: header %+v, want %+v", i, h, want)
		}
		if at := sameBits(dst[:n], payload(uint64(i), n)); at >= 0 {
			t.Errorf("Recv #%d (%d elements): payload differs at element %d", i, n, at)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func testAllPairs(t *testing.T, newRing Factory) {
	const world, channels, msgs, n = 3, 2, 20, 1000
	ts := newRing(t, world, channels)
	defer closeAll(ts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	report := func(format string, args ...any) {
		mu.Lock()
		errs = append(errs, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	for from := range world {
		for to := range world {
			if from == to {
				continue
			}
			for ch := range channels {
				seed := uint64(from*100 + to*10 + ch)
				wg.Add(2)
				go func() {
					defer wg.Done()
					for i := range msgs {
						if err := ts[from].Send(ctx, to, ch, hdr(uint64(i), 0), payload(seed+uint64(i)*1000, n)); err != nil {
							report("Send %d→%d ch %d #%d: %v", from, to, ch, i, err)
							return
						}
					}
				}()
				go func() {
					defer wg.Done()
					dst := make([]float32, n)
					for i := range msgs {
						h, err := ts[to].Recv(ctx, from, ch, dst)
						if err != nil {
							report("Recv %d→%d ch %d #%d: %v", from, to, ch, i, err)
							return
						}
						if h.Seq != uint64(i) || h.Len != n {
							report("Recv %d→%d ch %d #%d: seq %d len %d, want %d %d", from, to, ch, i, h.Seq, h.Len, i, n)
						}
						if at := sameBits(dst, payload(seed+uint64(i)*1000, n)); at >= 0 {
							report("Recv %d→%d ch %d #%d: payload differs at %d", from, to, ch, i, at)
						}
					}
				}()
			}
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(strings.Join(errs, "\n"))
	}
}

func testReuse(t *testing.T, newRing Factory) {
	ts := newRing(t, 2, 1)
	defer closeAll(ts)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n, msgs = 1 << 16, 8
	buf := make([]float32, n)
	errc := make(chan error, 1)
	go func() {
		for i := range msgs {
			for j := range buf {
				buf[j] = float32(i)
			}
			if err := ts[0].Send(ctx, 1, 0, hdr(uint64(i), 0), buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	dst := make([]float32, n)
	for i := range msgs {
		if _, err := ts[1].Recv(ctx, 0, 0, dst); err != nil {
			t.Fatalf("Recv #%d: %v", i, err)
		}
		for j, v := range dst {
			if v != float32(i) {
				t.Fatalf("Recv #%d: element %d = %v, want %v (payload was overwritten after Send returned)", i, j, v, float32(i))
			}
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func testTooLarge(t *testing.T, newRing Factory) {
	ts := newRing(t, 2, 1)
	defer closeAll(ts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go ts[0].Send(ctx, 1, 0, hdr(0, 0), make([]float32, 100))
	_, err := ts[1].Recv(ctx, 0, 0, make([]float32, 10))
	if !errors.Is(err, collective.ErrTooLarge) {
		t.Errorf("Recv of 100 elements into 10: err = %v, want ErrTooLarge", err)
	}
}

func testRecvDeadline(t *testing.T, newRing Factory) {
	ts := newRing(t, 2, 1)
	defer closeAll(ts)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := ts[1].Recv(ctx, 0, 0, make([]float32, 10))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Recv with nothing sent: err = %v, want context.DeadlineExceeded", err)
	}
}

func testCloseLocal(t *testing.T, newRing Factory) {
	ts := newRing(t, 2, 1)
	defer closeAll(ts)
	errc := make(chan error, 1)
	go func() {
		_, err := ts[1].Recv(context.Background(), 0, 0, make([]float32, 10))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	ts[1].Close()
	select {
	case err := <-errc:
		if !errors.Is(err, collective.ErrClosed) {
			t.Errorf("Recv pending during Close: err = %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Recv still blocked 10s after Close")
	}
	if err := ts[1].Send(context.Background(), 0, 0, hdr(0, 0), nil); !errors.Is(err, collective.ErrClosed) {
		t.Errorf("Send after Close: err = %v, want ErrClosed", err)
	}
	if err := ts[1].Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func testPeerClose(t *testing.T, newRing Factory) {
	ts := newRing(t, 2, 1)
	defer closeAll(ts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A message sent before the close is still delivered; then the peer's
	// absence is an error, not a hang.
	if err := ts[0].Send(ctx, 1, 0, hdr(0, 0), []float32{1, 2}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	dst := make([]float32, 2)
	if _, err := ts[1].Recv(ctx, 0, 0, dst); err != nil || dst[1] != 2 {
		t.Fatalf("Recv before close: %v %v", dst, err)
	}
	// The reverse lane too is in use before the close (a peer never reached
	// is indistinguishable from a slow one: that is the caller's timeout).
	if err := ts[1].Send(ctx, 0, 0, hdr(0, 0), []float32{3}); err != nil {
		t.Fatalf("Send 1→0: %v", err)
	}
	if _, err := ts[0].Recv(ctx, 1, 0, dst); err != nil {
		t.Fatalf("Recv 1→0: %v", err)
	}
	ts[0].Close()
	if _, err := ts[1].Recv(ctx, 0, 0, dst); !errors.Is(err, collective.ErrPeerClosed) {
		t.Errorf("Recv from a closed peer: err = %v, want ErrPeerClosed", err)
	}
	// Sending to the closed peer fails (possibly only once buffers fill).
	big := make([]float32, 1<<16)
	var err error
	for i := 0; i < 10000 && err == nil; i++ {
		err = ts[1].Send(ctx, 0, 0, hdr(uint64(i), 0), big)
	}
	if !errors.Is(err, collective.ErrPeerClosed) {
		t.Errorf("Send to a closed peer: err = %v, want ErrPeerClosed", err)
	}
}

// OpenFDs counts this process's open file descriptors (sockets included),
// or returns -1 where /proc/self/fd does not exist.
func OpenFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// CheckNoFDLeaks fails t if, within 5 seconds, the number of open file
// descriptors does not settle back to at most before (from OpenFDs): a
// connection left open after Close.
func CheckNoFDLeaks(t testing.TB, before int) {
	t.Helper()
	if before < 0 {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := OpenFDs()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("file descriptors leaked: %d open, %d before", n, before)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CheckNoLeaks fails t if, within 5 seconds, the number of goroutines does
// not settle back to at most before (runtime.NumGoroutine() taken before the
// code under test started).
func CheckNoLeaks(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutines leaked: %d running, %d before\n%s", n, before, buf)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
