package consensusbench

import (
	"github.com/loomtrain/loom/coordinator/consensus/localraft"
	"testing"
	"time"
)

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(101-i)*time.Millisecond)
	}
	tests := []struct {
		in       []time.Duration
		p50, p99 time.Duration
	}{
		{nil, 0, 0},
		{[]time.Duration{5}, 5, 5},
		{d, 50 * time.Millisecond, 99 * time.Millisecond},
	}
	for _, tc := range tests {
		p50, p99 := percentiles(tc.in)
		if p50 != tc.p50 || p99 != tc.p99 {
			t.Errorf("percentiles(%d values) = %v, %v; want %v, %v", len(tc.in), p50, p99, tc.p50, tc.p99)
		}
	}
}

// A small run end to end: the replicated state equals the baseline's.
func TestRunApplyBenchSmall(t *testing.T) {
	r, err := RunApplyBench(t.TempDir(), ApplyBench{Nodes: 3, Ops: 200, Concurrency: 8, ValueBytes: 16})
	if err != nil {
		t.Fatal(err)
	}
	if r.RaftPerSec <= 0 || r.FSMPerSec <= 0 || r.Ratio <= 0 {
		t.Fatalf("RunApplyBench = %+v, want positive rates", r)
	}
	if _, err := RunApplyBench(t.TempDir(), ApplyBench{Nodes: 2}); err == nil {
		t.Fatal("RunApplyBench(Nodes: 2) succeeded, want an error")
	}
}

func TestMeasureApplyMatchesFSM(t *testing.T) {
	c, err := localraft.NewClusterWithOptions(t.TempDir(), 3, localraft.ClusterOptions{Tuning: localraft.BenchTuning()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := c.Converge(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cmd := func(i int) []byte { return KVSetCommand(i, 4) }
	if _, err := MeasureApply(c.Nodes[l], 300, 4, cmd); err != nil {
		t.Fatal(err)
	}
	ref := localraft.NewKV()
	if _, err := MeasureFSMApply(ref, 300, cmd); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Converge(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	for i := range c.Nodes {
		got, want := c.FSMs[i].(*localraft.KV).Map(), ref.Map()
		if len(got) != len(want) {
			t.Fatalf("%s has %d keys, the baseline %d", c.IDs[i], len(got), len(want))
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%s: %s = %q, baseline %q", c.IDs[i], k, got[k], v)
			}
		}
	}
}

func BenchmarkRaftApply3(b *testing.B) {
	c, err := localraft.NewClusterWithOptions(b.TempDir(), 3, localraft.ClusterOptions{Tuning: localraft.BenchTuning()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	l, err := c.Converge(10 * time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	if _, err := MeasureApply(c.Nodes[l], b.N, 64, func(i int) []byte { return KVSetCommand(i, 128) }); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkFSMApply(b *testing.B) {
	f := localraft.NewKV()
	b.ResetTimer()
	if _, err := MeasureFSMApply(f, b.N, func(i int) []byte { return KVSetCommand(i, 128) }); err != nil {
		b.Fatal(err)
	}
}
