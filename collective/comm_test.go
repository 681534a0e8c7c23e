package collective_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/collective/inproc"
	"github.com/loomtrain/loom/collective/transporttest"
)

// ring builds world communicators over an in-process network.
func ring(t testing.TB, world, channels int, cfg collective.Config) []*collective.Comm {
	t.Helper()
	net := inproc.NewNetwork(world, channels)
	comms := make([]*collective.Comm, world)
	for r := range comms {
		c, err := collective.New(net.Transport(r), cfg)
		if err != nil {
			t.Fatal(err)
		}
		comms[r] = c
	}
	t.Cleanup(func() {
		for _, c := range comms {
			c.Close()
		}
	})
	return comms
}

// onAll runs f on every rank concurrently and returns the errors by rank.
func onAll(comms []*collective.Comm, f func(r int, c *collective.Comm) error) []error {
	errs := make([]error, len(comms))
	var wg sync.WaitGroup
	for r, c := range comms {
		wg.Go(func() { errs[r] = f(r, c) })
	}
	wg.Wait()
	return errs
}

func noErrors(t *testing.T, what string, errs []error) {
	t.Helper()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("%s: rank %d: %v", what, r, err)
		}
	}
}

func TestAllReduce(t *testing.T) {
	for _, world := range []int{1, 2, 3, 4, 8} {
		for _, channels := range []int{1, 2} {
			for _, n := range []int{1, 5, 1000, 4099} {
				for _, op := range []collective.ReduceOp{collective.Sum, collective.Mean} {
					name := fmt.Sprintf("world=%d/channels=%d/len=%d/%v", world, channels, n, op)
					t.Run(name, func(t *testing.T) {
						comms := ring(t, world, channels, collective.Config{Job: "t", SliceBytes: 256})
						bufs := randBufs(uint64(world*n), world, n)
						sum, abs := refSum(bufs)
						if op == collective.Mean {
							for j := range sum {
								sum[j] /= float64(world)
								abs[j] /= float64(world)
							}
						}
						errs := onAll(comms, func(r int, c *collective.Comm) error {
							return c.AllReduce(context.Background(), bufs[r], op)
						})
						noErrors(t, "AllReduce", errs)
						for r := range bufs {
							checkClose(t, fmt.Sprintf("rank %d", r), bufs[r], sum, abs, world)
							for j := range bufs[r] {
								if math.Float32bits(bufs[r][j]) != math.Float32bits(bufs[0][j]) {
									t.Fatalf("rank %d element %d = %v, rank 0 has %v: ranks not bit-identical", r, j, bufs[r][j], bufs[0][j])
								}
							}
						}
					})
				}
			}
		}
	}
}

func TestReduceScatterAllGatherBroadcastBarrier(t *testing.T) {
	const world, n = 4, 1003
	comms := ring(t, world, 2, collective.Config{Job: "t", SliceBytes: 400})
	ctx := context.Background()

	bufs := randBufs(1, world, n)
	sum, abs := refSum(bufs)
	noErrors(t, "ReduceScatter", onAll(comms, func(r int, c *collective.Comm) error { return c.ReduceScatter(ctx, bufs[r], collective.Sum) }))
	for r := range bufs {
		cr := collective.ChunkRange(n, world, r)
		checkClose(t, fmt.Sprintf("ReduceScatter rank %d", r), bufs[r][cr.Off:cr.Off+cr.Len], sum[cr.Off:cr.Off+cr.Len], abs[cr.Off:cr.Off+cr.Len], world)
	}
	// All-gather the reduced chunks: the result is the all-reduce.
	noErrors(t, "AllGather", onAll(comms, func(r int, c *collective.Comm) error { return c.AllGather(ctx, bufs[r]) }))
	for r := range bufs {
		checkClose(t, fmt.Sprintf("AllGather rank %d", r), bufs[r], sum, abs, world)
	}

	for root := range world {
		bufs := randBufs(uint64(10+root), world, n)
		want := fmt.Sprint(bufs[root])
		noErrors(t, "Broadcast", onAll(comms, func(r int, c *collective.Comm) error { return c.Broadcast(ctx, bufs[r], root) }))
		for r := range bufs {
			if got := fmt.Sprint(bufs[r]); got != want {
				t.Fatalf("Broadcast(root %d): rank %d differs from the root", root, r)
			}
		}
	}
	noErrors(t, "Barrier", onAll(comms, func(r int, c *collective.Comm) error { return c.Barrier(ctx) }))
}

// TestMismatchedGeneration: a rank still on generation 3 talking to ranks on
// generation 4 is an error that names the peer, the operation and both
// generations, on the ranks that receive its messages.
func TestMismatchedGeneration(t *testing.T) {
	before := runtime.NumGoroutine()
	net := inproc.NewNetwork(3, 1)
	comms := make([]*collective.Comm, 3)
	for r := range comms {
		gen := uint64(4)
		if r == 1 {
			gen = 3
		}
		comms[r], _ = collective.New(net.Transport(r), collective.Config{Job: "j", Generation: gen, Timeout: 2 * time.Second})
	}
	errs := onAll(comms, func(r int, c *collective.Comm) error {
		return c.AllReduce(context.Background(), make([]float32, 30), collective.Sum)
	})
	for r, err := range errs {
		if err == nil {
			t.Errorf("rank %d: AllReduce across generations 3 and 4 succeeded", r)
		}
	}
	// The first failure in the ring is a mismatch at a rank that receives
	// from the other generation; the others may see it as the mismatch too,
	// or as their neighbour closing after it aborted.
	mismatches := 0
	for r, err := range errs {
		var oe *collective.OpError
		if !errors.As(err, &oe) || oe.Op != collective.OpAllReduce {
			t.Errorf("rank %d: err = %v, want an allreduce *OpError", r, err)
			continue
		}
		if errors.Is(err, collective.ErrMismatch) {
			mismatches++
			msg := err.Error()
			if oe.Peer != (r+2)%3 || !strings.Contains(msg, "generation 3") || !strings.Contains(msg, "generation 4") {
				t.Errorf("rank %d: mismatch error %q does not name its predecessor and both generations", r, msg)
			}
		}
	}
	if mismatches == 0 {
		t.Errorf("no rank reported ErrMismatch: %v", errs)
	}
	for _, c := range comms {
		c.Close()
	}
	transporttest.CheckNoLeaks(t, before)
}

// TestSilentPeer: rank 2 never joins the all-reduce. Every other rank fails
// (no hang) with an error naming the operation; the ranks next to rank 2 name
// it as the peer, and the timeout is ErrTimeout.
func TestSilentPeer(t *testing.T) {
	before := runtime.NumGoroutine()
	const world = 4
	comms := ring(t, world, 2, collective.Config{Job: "j", Timeout: 200 * time.Millisecond, SliceBytes: 64})
	errs := make([]error, world)
	var wg sync.WaitGroup
	for r, c := range comms {
		if r == 2 {
			continue
		}
		wg.Go(func() { errs[r] = c.AllReduce(context.Background(), make([]float32, 1000), collective.Sum) })
	}
	wait(t, &wg)
	for r, err := range errs {
		if r == 2 {
			continue
		}
		var oe *collective.OpError
		if !errors.As(err, &oe) || oe.Op != collective.OpAllReduce {
			t.Errorf("rank %d: err = %v, want an allreduce *OpError", r, err)
		}
	}
	// The rank that waits on rank 2 times out naming it (usually rank 3;
	// under heavy load another rank's timer can fire first, and rank 3 then
	// sees that rank close).
	named := false
	for _, err := range errs {
		var oe *collective.OpError
		if errors.As(err, &oe) && oe.Peer == 2 && errors.Is(err, collective.ErrTimeout) {
			named = true
		}
	}
	if !named {
		t.Errorf("no rank reported ErrTimeout naming silent rank 2: %v", errs)
	}
	// The communicator is aborted afterwards.
	if err := comms[0].Barrier(context.Background()); !errors.Is(err, collective.ErrAborted) {
		t.Errorf("Barrier after a failed AllReduce: err = %v, want ErrAborted", err)
	}
	for _, c := range comms {
		c.Close()
	}
	transporttest.CheckNoLeaks(t, before)
}

// TestDeadPeer: rank 1's transport dies in the middle of a run of
// all-reduces; every rank gets an error, none hangs, nothing leaks.
func TestDeadPeer(t *testing.T) {
	before := runtime.NumGoroutine()
	const world = 4
	net := inproc.NewNetwork(world, 1)
	comms := make([]*collective.Comm, world)
	for r := range comms {
		comms[r], _ = collective.New(net.Transport(r), collective.Config{Job: "j", Timeout: 2 * time.Second, SliceBytes: 64})
	}
	errs := make([]error, world)
	var wg sync.WaitGroup
	for r, c := range comms {
		wg.Go(func() {
			buf := make([]float32, 5000)
			for i := 0; i < 1000; i++ {
				if r == 1 && i == 3 {
					net.Transport(1).Close() // the process dies
				}
				if err := c.AllReduce(context.Background(), buf, collective.Sum); err != nil {
					errs[r] = err
					return
				}
			}
		})
	}
	wait(t, &wg)
	for r, err := range errs {
		if err == nil {
			t.Errorf("rank %d: no error after rank 1 died", r)
		}
	}
	if !errors.Is(errs[2], collective.ErrPeerClosed) {
		t.Errorf("rank 2 (receives from dead rank 1): err = %v, want ErrPeerClosed", errs[2])
	}
	for _, c := range comms {
		c.Close()
	}
	transporttest.CheckNoLeaks(t, before)
}

func wait(t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("ranks still running 20s later: a collective hangs")
	}
}

// manualClock fires its timers only when the test says so.
type manualClock struct {
	mu     sync.Mutex
	timers map[int]func()
	next   int
}

func (c *manualClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timers == nil {
		c.timers = map[int]func(){}
	}
	id := c.next
	c.next++
	c.timers[id] = f
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.timers[id]
		delete(c.timers, id)
		return ok
	}
}

// fireAll fires every pending timer and reports how many there were.
func (c *manualClock) fireAll() int {
	c.mu.Lock()
	fs := c.timers
	c.timers = map[int]func(){}
	c.mu.Unlock()
	for _, f := range fs {
		go f()
	}
	return len(fs)
}

// TestTimeoutUsesInjectedClock: with a manual clock, a rank waiting for a
// peer fails with ErrTimeout exactly when its timer fires, not before.
func TestTimeoutUsesInjectedClock(t *testing.T) {
	clk := &manualClock{}
	net := inproc.NewNetwork(2, 1)
	c0, _ := collective.New(net.Transport(0), collective.Config{Job: "j", Clock: clk, Timeout: time.Hour})
	defer c0.Close()
	defer net.Transport(1).Close()
	errc := make(chan error, 1)
	go func() { errc <- c0.Barrier(context.Background()) }()
	select {
	case err := <-errc:
		t.Fatalf("Barrier returned %v before its timer fired", err)
	case <-time.After(50 * time.Millisecond):
	}
	for clk.fireAll() == 0 {
		time.Sleep(time.Millisecond)
	}
	err := <-errc
	if !errors.Is(err, collective.ErrTimeout) {
		t.Fatalf("Barrier after the timer fired: %v, want ErrTimeout", err)
	}
}

func TestCallerCancel(t *testing.T) {
	comms := ring(t, 2, 1, collective.Config{Job: "j"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := comms[0].AllReduce(ctx, make([]float32, 10), collective.Sum)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("AllReduce with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestBucketer(t *testing.T) {
	const world = 3
	sizes := []int{100, 7, 2000}
	comms := ring(t, world, 2, collective.Config{Job: "t", SliceBytes: 512})
	bs := make([]*collective.Bucketer, world)
	for r := range bs {
		bs[r] = collective.NewBucketer(comms[r], collective.Sum, sizes...)
		bs[r].ReduceScatter(2) // bucket 2 as ZeRO-2 reduces gradients
	}
	for step := range 2 {
		inputs := make([][][]float32, len(sizes)) // [bucket][rank]
		for i, n := range sizes {
			inputs[i] = randBufs(uint64(step*10+i), world, n)
		}
		errs := onAll(comms, func(r int, c *collective.Comm) error {
			b := bs[r]
			// Each rank marks buckets in a different order; they are still
			// reduced in index order everywhere.
			order := []int{2, 1, 0}
			if r == 1 {
				order = []int{0, 1, 2}
			}
			for _, i := range order {
				copy(b.Bucket(i), inputs[i][r])
				b.Ready(context.Background(), i)
			}
			return b.Wait()
		})
		noErrors(t, fmt.Sprintf("step %d", step), errs)
		for i := range sizes {
			sum, abs := refSum(inputs[i])
			for r := range world {
				got, want, wabs := bs[r].Bucket(i), sum, abs
				if i == 2 { // only the rank's own chunk is reduced
					c := collective.ChunkRange(len(got), world, r)
					partial := 0 // elements outside the chunk that are not the sum
					for j := range got {
						if (j < c.Off || j >= c.Off+c.Len) && math.Abs(float64(got[j])-sum[j]) > 1e-3*abs[j] {
							partial++
						}
					}
					if partial == 0 {
						t.Errorf("step %d rank %d: the reduce-scatter bucket holds the whole sum, not only the rank's chunk", step, r)
					}
					got, want, wabs = got[c.Off:c.Off+c.Len], sum[c.Off:c.Off+c.Len], abs[c.Off:c.Off+c.Len]
				}
				checkClose(t, fmt.Sprintf("step %d bucket %d rank %d", step, i, r), got, want, wabs, world)
			}
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	net := inproc.NewNetwork(1, 1)
	for _, cfg := range []collective.Config{
		{Job: strings.Repeat("x", collective.MaxJobLen+1)},
		{Timeout: -time.Second},
		{SliceBytes: -1},
	} {
		if _, err := collective.New(net.Transport(0), cfg); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", cfg)
		}
	}
}

// TestCloseEndsOperation: closing a communicator while one of its
// operations waits on a peer ends that operation with an error.
func TestCloseEndsOperation(t *testing.T) {
	comms := ring(t, 2, 1, collective.Config{Job: "j", Timeout: time.Hour})
	errc := make(chan error, 1)
	go func() { errc <- comms[0].Barrier(context.Background()) }()
	time.Sleep(20 * time.Millisecond)
	comms[0].Close()
	select {
	case err := <-errc:
		if !errors.Is(err, collective.ErrClosed) {
			t.Errorf("Barrier ended by Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Barrier still waiting 10s after Close")
	}
}
