package collbench_test

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/loomtrain/loom/collective"

	"github.com/loomtrain/loom/collective/collbench"
)

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"4096", 4096, true}, {"64KiB", 64 << 10, true}, {"16MiB", 16 << 20, true}, {"1GiB", 1 << 30, true},
		{"2M", 2 << 20, true}, {" 3 MB", 3 << 20, true}, {"", 0, false}, {"-1", 0, false}, {"1TiB", 0, false}, {"MiB", 0, false},
	} {
		got, err := collbench.ParseBytes(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"4096", "64KiB", "16MiB", "1G", "x", "9999999999999GiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := collbench.ParseBytes(s)
		if err == nil && n < 0 {
			t.Fatalf("ParseBytes(%q) = %d", s, n)
		}
	})
}

func TestCriticalPath(t *testing.T) {
	// Two ranks, rank 1 twice as slow at every step: forward finishes when
	// rank 1 does (steps only wait for the predecessor's start).
	tt := [][]float64{{1, 1}, {2, 2}}
	if got := collbench.CriticalPath(tt, false); got != 4 {
		t.Errorf("CriticalPath(%v, forward) = %v, want 4", tt, got)
	}
	// Backward also waits for the predecessor's finished accumulator:
	// rank 0's step 1 starts at 2 (rank 1 finished step 0), ends at 3;
	// rank 1's step 1 starts at max(2, 1) = 2, ends at 4.
	if got := collbench.CriticalPath(tt, true); got != 4 {
		t.Errorf("CriticalPath(%v, backward) = %v, want 4", tt, got)
	}
	// A naive causal ring: rank r computes at steps s ≤ r only.
	naive := [][]float64{{1, 0, 0}, {1, 1, 0}, {1, 1, 1}}
	if got := collbench.CriticalPath(naive, false); got != 3 {
		t.Errorf("CriticalPath(%v, forward) = %v, want 3", naive, got)
	}
}

// TestBenchmarksRun runs both benchmarks at toy sizes: they must complete
// and print their tables (no timing is checked).
func TestBenchmarksRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 12 transports")
	}
	ctx := context.Background()
	ar, err := collbench.AllReduce(ctx, collbench.AllReduceOptions{World: 3, Sizes: []int64{4096, 1 << 16}, Warmup: 1, Iters: 1, P2PBytes: 1 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	collbench.WriteAllReduceTable(&buf, ar)
	if len(ar.Rows) != 6 || len(ar.P2P) != 3 || !strings.Contains(buf.String(), "busbw") {
		t.Errorf("AllReduce: %d rows, %d p2p rows, table:\n%s", len(ar.Rows), len(ar.P2P), buf.String())
	}
	ra, err := collbench.RingAttention(ctx, collbench.RingAttnOptions{World: 2, TokensPerRank: 16, Heads: 1, HeadDim: 8, Iters: 1, MemWorlds: []int{1, 2}, MemTokens: 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	collbench.WriteRingAttnTable(&buf, ra)
	if len(ra.Layouts) != 2 || len(ra.Memory) != 2 || !strings.Contains(buf.String(), "zigzag") {
		t.Errorf("RingAttention: %d layouts, %d memory rows, table:\n%s", len(ra.Layouts), len(ra.Memory), buf.String())
	}
	// The measured comparison, one rank per core, where there are cores.
	if runtime.GOOS == "linux" && runtime.NumCPU() >= 2 {
		if len(ra.Pinned) != 2 || ra.Pinned[0].Speedup != 1 || ra.Pinned[1].WallMS <= 0 || ra.Pinned[1].ModelMS <= 0 ||
			!strings.Contains(buf.String(), "measured, one rank per core") {
			t.Errorf("RingAttention pinned rows %+v (skipped: %q), table:\n%s", ra.Pinned, ra.PinnedSkipped, buf.String())
		}
	}
	if _, err := collbench.RingAttention(ctx, collbench.RingAttnOptions{World: 2, TokensPerRank: 16, Heads: 1, HeadDim: 8, Iters: 1,
		MemWorlds: []int{1}, MemTokens: 8, PinnedWorld: 4096}, nil); err == nil || !strings.Contains(err.Error(), "each rank needs its own") {
		t.Errorf("RingAttention with more pinned ranks than CPUs: %v", err)
	}
}

// TestAllReduceGRPCBuffer runs the gRPC ring with a non-default buffer size,
// and checks that a negative one is refused by the transport.
func TestAllReduceGRPCBuffer(t *testing.T) {
	ctx := context.Background()
	o := collbench.AllReduceOptions{World: 2, Sizes: []int64{1 << 16}, Transports: []string{collbench.GRPC}, Warmup: 1, Iters: 1, GRPCBuffer: 32 << 10}
	ar, err := collbench.AllReduce(ctx, o, nil)
	if err != nil || len(ar.Rows) != 1 || ar.Rows[0].BusBW <= 0 {
		t.Fatalf("AllReduce(%+v) = %+v, %v; want one row with a positive busbw", o, ar, err)
	}
	o.GRPCBuffer = -1
	if _, err := collbench.AllReduce(ctx, o, nil); err == nil || !strings.Contains(err.Error(), "BufferSize") {
		t.Errorf("AllReduce with GRPCBuffer -1: err %v, want one naming BufferSize", err)
	}
}

// TestAllReduceDataPaths runs the gRPC ring once with each data path.
func TestAllReduceDataPaths(t *testing.T) {
	o := collbench.AllReduceOptions{World: 2, Sizes: []int64{1 << 16}, Transports: []string{collbench.GRPCBuffered, collbench.GRPCWritev, collbench.GRPCReadv}, Warmup: 1, Iters: 1}
	ar, err := collbench.AllReduce(context.Background(), o, nil)
	if err != nil || len(ar.Rows) != 3 {
		t.Fatalf("AllReduce(%+v) = %+v, %v; want three rows", o, ar, err)
	}
	for _, r := range ar.Rows {
		if r.BusBW <= 0 {
			t.Errorf("%s: busbw %v, want > 0", r.Transport, r.BusBW)
		}
	}
	o.Transports = []string{"grpc-mmap"}
	if _, err := collbench.AllReduce(context.Background(), o, nil); err == nil || !strings.Contains(err.Error(), "grpc-mmap") {
		t.Errorf("AllReduce with transport grpc-mmap: %v, want an error naming it", err)
	}
}

func benchAllReduce(b *testing.B, kind string, size int64) {
	trs, err := collbench.Ring(kind, 4, 2)
	if err != nil {
		b.Fatal(err)
	}
	comms := make([]*collective.Comm, len(trs))
	bufs := make([][]float32, len(trs))
	for r, tr := range trs {
		comms[r], _ = collective.New(tr, collective.Config{Job: "b"})
		bufs[r] = make([]float32, size/4)
	}
	defer func() {
		for _, c := range comms {
			c.Close()
		}
	}()
	b.SetBytes(size)
	for b.Loop() {
		var wg sync.WaitGroup
		for r, c := range comms {
			wg.Go(func() {
				if err := c.AllReduce(context.Background(), bufs[r], collective.Mean); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
}

func BenchmarkAllReduce16MiB(b *testing.B) {
	for _, kind := range []string{collbench.TCP, collbench.GRPC, collbench.GRPCBuffered, collbench.GRPCWritev, collbench.GRPCReadv} {
		b.Run(kind, func(b *testing.B) { benchAllReduce(b, kind, 16<<20) })
	}
}
