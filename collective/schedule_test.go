package collective_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/loomtrain/loom/collective"
)

func TestPartition(t *testing.T) {
	for _, tc := range []struct {
		n, parts int
		want     []collective.Range
	}{
		{0, 2, []collective.Range{{0, 0}, {0, 0}}},
		{5, 1, []collective.Range{{0, 5}}},
		{7, 3, []collective.Range{{0, 3}, {3, 2}, {5, 2}}},
		{2, 4, []collective.Range{{0, 1}, {1, 1}, {2, 0}, {2, 0}}},
	} {
		got := collective.Partition(tc.n, tc.parts)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("Partition(%d, %d) = %v, want %v", tc.n, tc.parts, got, tc.want)
		}
	}
}

func randBufs(seed uint64, world, n int) [][]float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	bufs := make([][]float32, world)
	for i := range bufs {
		bufs[i] = make([]float32, n)
		for j := range bufs[i] {
			bufs[i][j] = float32(r.NormFloat64())
		}
	}
	return bufs
}

// refSum is the naive reference: the float64 sum over ranks.
func refSum(bufs [][]float32) (sum, abs []float64) {
	sum = make([]float64, len(bufs[0]))
	abs = make([]float64, len(bufs[0]))
	for _, b := range bufs {
		for j, v := range b {
			sum[j] += float64(v)
			abs[j] += math.Abs(float64(v))
		}
	}
	return sum, abs
}

// checkClose compares got against want (float64) element by element with a
// tolerance of 1e-6·world relative to the sum of magnitudes.
func checkClose(t *testing.T, what string, got []float32, want, abs []float64, world int) {
	t.Helper()
	for j := range got {
		if d := math.Abs(float64(got[j]) - want[j]); d > 1e-6*float64(world)*abs[j]+1e-30 {
			t.Fatalf("%s: element %d = %v, want %v (float64 reference; |diff| %g)", what, j, got[j], want[j], d)
		}
	}
}

// simulate runs MakePlan for every rank and channel through SimulatePlans.
func simulate(t *testing.T, spec collective.PlanSpec, bufs [][]float32) {
	t.Helper()
	for ch := range spec.Channels {
		plans := make([]collective.Plan, spec.World)
		for r := range plans {
			s := spec
			s.Rank, s.Channel = r, ch
			pl, err := collective.MakePlan(s)
			if err != nil {
				t.Fatalf("MakePlan(%+v): %v", s, err)
			}
			plans[r] = pl
		}
		if err := collective.SimulatePlans(plans, bufs); err != nil {
			t.Fatalf("SimulatePlans(%+v): %v", spec, err)
		}
	}
}

func TestPlansSimulated(t *testing.T) {
	for _, world := range []int{1, 2, 3, 4, 5, 8} {
		for _, channels := range []int{1, 3} {
			for _, n := range []int{0, 7, 1001} {
				for _, slice := range []int{3, 64} {
					spec := collective.PlanSpec{World: world, Len: n, Channels: channels, SliceElems: slice}
					name := fmt.Sprintf("world=%d/channels=%d/len=%d/slice=%d", world, channels, n, slice)
					t.Run(name, func(t *testing.T) { checkPlans(t, spec) })
				}
			}
		}
	}
}

func checkPlans(t *testing.T, spec collective.PlanSpec) {
	world, n := spec.World, spec.Len
	// All-reduce, sum and mean.
	for _, mean := range []bool{false, true} {
		bufs := randBufs(uint64(n*31+world), world, n)
		sum, abs := refSum(bufs)
		s := spec
		s.Kind, s.Mean = collective.PlanAllReduce, mean
		simulate(t, s, bufs)
		for j := range sum {
			if mean {
				sum[j] /= float64(world)
				abs[j] /= float64(world)
			}
		}
		for r := range bufs {
			checkClose(t, fmt.Sprintf("all-reduce mean=%v rank %d", mean, r), bufs[r], sum, abs, world)
			for j := range bufs[r] {
				if math.Float32bits(bufs[r][j]) != math.Float32bits(bufs[0][j]) {
					t.Fatalf("all-reduce: rank %d element %d = %v, rank 0 has %v: not bit-identical", r, j, bufs[r][j], bufs[0][j])
				}
			}
		}
	}
	// Reduce-scatter: each rank's own chunk is the sum.
	bufs := randBufs(5, world, n)
	sum, abs := refSum(bufs)
	s := spec
	s.Kind = collective.PlanReduceScatter
	simulate(t, s, bufs)
	for r := range bufs {
		c := collective.ChunkRange(n, world, r)
		checkClose(t, fmt.Sprintf("reduce-scatter rank %d chunk %v", r, c), bufs[r][c.Off:c.Off+c.Len], sum[c.Off:c.Off+c.Len], abs[c.Off:c.Off+c.Len], world)
	}
	// All-gather: every rank ends with every owner's chunk.
	bufs = make([][]float32, world)
	want := randBufs(6, 1, n)[0]
	for r := range bufs {
		bufs[r] = make([]float32, n)
		c := collective.ChunkRange(n, world, r)
		copy(bufs[r][c.Off:c.Off+c.Len], want[c.Off:c.Off+c.Len])
	}
	s.Kind = collective.PlanAllGather
	simulate(t, s, bufs)
	for r := range bufs {
		if fmt.Sprint(bufs[r]) != fmt.Sprint(want) {
			t.Fatalf("all-gather: rank %d = %v, want %v", r, bufs[r], want)
		}
	}
	// Broadcast from every root.
	for root := range world {
		bufs = randBufs(uint64(root), world, n)
		want := append([]float32(nil), bufs[root]...)
		s.Kind, s.Root = collective.PlanBroadcast, root
		simulate(t, s, bufs)
		for r := range bufs {
			if fmt.Sprint(bufs[r]) != fmt.Sprint(want) {
				t.Fatalf("broadcast from %d: rank %d = %v, want %v", root, r, bufs[r], want)
			}
		}
	}
}

// TestPlanShape pins the ring schedule of a small case: 3 ranks, one
// channel, one element per chunk. Rank 0 sends chunk 2 (r-1) first, then the
// partial sum of chunk 1 it received, and so on (NCCL's ring, with rank r
// owning chunk r).
func TestPlanShape(t *testing.T) {
	pl, err := collective.MakePlan(collective.PlanSpec{Kind: collective.PlanAllReduce, World: 3, Rank: 0, Len: 3, Channels: 1, SliceElems: 1})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := range pl.Sends {
		s, r := pl.Sends[i], pl.Recvs[i]
		got = append(got, fmt.Sprintf("step %d: send [%d] after recv %d; recv [%d] reduce=%v after send %d", s.Step, s.Off, s.AfterRecv, r.Off, r.Reduce, r.AfterSend))
	}
	want := []string{
		"step 0: send [2] after recv -1; recv [1] reduce=true after send -1",
		"step 1: send [1] after recv 0; recv [0] reduce=true after send -1",
		"step 2: send [0] after recv 1; recv [2] reduce=false after send 0",
		"step 3: send [2] after recv 2; recv [1] reduce=false after send 1",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("MakePlan(allreduce, world 3, rank 0):\n got %q\nwant %q", got, want)
	}
}

func TestSimulateDetectsDeadlock(t *testing.T) {
	// Two ranks that each wait for a receive before their first send.
	pl := collective.Plan{
		Sends: []collective.SendStep{{Range: collective.Range{0, 1}, AfterRecv: 0}},
		Recvs: []collective.RecvStep{{Range: collective.Range{0, 1}, AfterSend: -1}},
	}
	err := collective.SimulatePlans([]collective.Plan{pl, pl}, [][]float32{{1}, {2}})
	if err == nil {
		t.Fatal("SimulatePlans of a cyclic wait: nil error, want deadlock")
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add(collective.AppendHeader(nil, collective.Header{Job: "j", Generation: 3, Seq: 9, Op: collective.OpAllReduce, Step: 2, Slice: 1, Len: 10}))
	f.Add([]byte{1, 0, 0})
	f.Add(make([]byte, 40))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := collective.ParseHeader(b)
		if err != nil {
			return
		}
		if n != collective.HeaderLen(h) || n > len(b) {
			t.Fatalf("ParseHeader used %d bytes of %d for %+v", n, len(b), h)
		}
		again := collective.AppendHeader(nil, h)
		if string(again) != string(b[:n]) {
			t.Fatalf("ParseHeader(%x) = %+v, which encodes as %x", b[:n], h, again)
		}
	})
}
