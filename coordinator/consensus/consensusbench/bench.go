package consensusbench

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loomtrain/loom/coordinator/consensus"
	"github.com/loomtrain/loom/coordinator/consensus/localraft"
)

// ApplyResult is one timed run of applies.
type ApplyResult struct {
	Ops     int
	Elapsed time.Duration
	// P50 and P99 are per-apply latencies: from Apply to its response (for
	// Raft, commit by a quorum and application on the leader).
	P50, P99 time.Duration
}

// PerSecond is the throughput.
func (r ApplyResult) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// MeasureApply applies cmd(0..ops-1) through node (the leader) from
// concurrency goroutines and times it. Any error ends the run.
func MeasureApply(node *consensus.Node, ops, concurrency int, cmd func(i int) []byte) (ApplyResult, error) {
	if concurrency < 1 {
		concurrency = 1
	}
	lat := make([]time.Duration, ops)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= ops {
					return
				}
				t0 := time.Now()
				resp, err := node.Apply(cmd(i), 10*time.Second)
				if err == nil {
					if e, ok := resp.(error); ok {
						err = e
					}
				}
				lat[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("apply %d: %w", i, err)
					}
					mu.Unlock()
					next.Store(int64(ops))
					return
				}
			}
		}()
	}
	wg.Wait()
	r := ApplyResult{Ops: ops, Elapsed: time.Since(start)}
	r.P50, r.P99 = percentiles(lat)
	return r, firstErr
}

// MeasureFSMApply is the baseline of MeasureApply: the same commands handed
// straight to fsm.Apply, one after another, as Raft's FSM goroutine would.
func MeasureFSMApply(fsm raft.FSM, ops int, cmd func(i int) []byte) (ApplyResult, error) {
	lat := make([]time.Duration, ops)
	start := time.Now()
	for i := range ops {
		t0 := time.Now()
		resp := fsm.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: cmd(i)})
		lat[i] = time.Since(t0)
		if e, ok := resp.(error); ok {
			return ApplyResult{}, fmt.Errorf("fsm apply %d: %w", i, e)
		}
	}
	r := ApplyResult{Ops: ops, Elapsed: time.Since(start)}
	r.P50, r.P99 = percentiles(lat)
	return r, nil
}

// percentiles returns the 50th and 99th percentiles (nearest rank).
func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.5) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return rank(0.50), rank(0.99)
}

// ApplyBench configures RunApplyBench.
type ApplyBench struct {
	Nodes       int  // voters (odd); 3 by default
	Ops         int  // commands per run; 20000 by default
	Concurrency int  // goroutines applying at once; 64 by default
	ValueBytes  int  // size of each value; 128 by default
	Sync        bool // fsync the Raft log (what production does)
}

// ApplyBenchResult is what `loom bench raft` prints.
type ApplyBenchResult struct {
	Nodes       int     `json:"nodes"`
	Ops         int     `json:"ops"`
	Concurrency int     `json:"concurrency"`
	ValueBytes  int     `json:"value_bytes"`
	Sync        bool    `json:"fsync"`
	RaftPerSec  float64 `json:"raft_apply_per_sec"`
	FSMPerSec   float64 `json:"fsm_apply_per_sec"`
	Ratio       float64 `json:"ratio"` // RaftPerSec / FSMPerSec
	RaftP50Ms   float64 `json:"raft_p50_ms"`
	RaftP99Ms   float64 `json:"raft_p99_ms"`
	FSMP50Us    float64 `json:"fsm_p50_us"`
	FSMP99Us    float64 `json:"fsm_p99_us"`
}

func (c *ApplyBench) defaults() error {
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.Ops == 0 {
		c.Ops = 20000
	}
	if c.Concurrency == 0 {
		c.Concurrency = 64
	}
	if c.ValueBytes == 0 {
		c.ValueBytes = 128
	}
	if c.Nodes < 1 || c.Nodes%2 == 0 {
		return fmt.Errorf("consensusbench: Nodes = %d, want 1, 3 or 5", c.Nodes)
	}
	if c.Ops < 1 || c.Concurrency < 1 || c.ValueBytes < 0 {
		return errors.New("consensusbench: Ops and Concurrency must be positive, ValueBytes not negative")
	}
	return nil
}

// KVSetCommand is the i-th command of the apply benchmark: a set of key
// k<i mod 4096> to a value of n bytes.
func KVSetCommand(i, n int) []byte {
	return localraft.Set("k"+strconv.Itoa(i%4096), strings.Repeat("v", n))
}

// RunApplyBench starts a cluster of KV nodes on loopback in a temporary
// directory under dir (os.TempDir() when empty), times cfg.Ops applies
// through the leader, then times the same commands on a bare KV (the
// baseline), and removes the directory.
func RunApplyBench(dir string, cfg ApplyBench) (ApplyBenchResult, error) {
	if err := cfg.defaults(); err != nil {
		return ApplyBenchResult{}, err
	}
	tmp, err := os.MkdirTemp(dir, "raft-bench")
	if err != nil {
		return ApplyBenchResult{}, err
	}
	defer os.RemoveAll(tmp)
	c, err := localraft.NewClusterWithOptions(tmp, cfg.Nodes, localraft.ClusterOptions{Sync: cfg.Sync, Tuning: localraft.BenchTuning()})
	if err != nil {
		return ApplyBenchResult{}, err
	}
	defer c.Close()
	l, err := c.Converge(30 * time.Second)
	if err != nil {
		return ApplyBenchResult{}, err
	}
	cmd := func(i int) []byte { return KVSetCommand(i, cfg.ValueBytes) }
	// Warm up connections and the log cache.
	if _, err := MeasureApply(c.Nodes[l], min(1000, cfg.Ops), cfg.Concurrency, cmd); err != nil {
		return ApplyBenchResult{}, err
	}
	rr, err := MeasureApply(c.Nodes[l], cfg.Ops, cfg.Concurrency, cmd)
	if err != nil {
		return ApplyBenchResult{}, err
	}
	fr, err := MeasureFSMApply(localraft.NewKV(), cfg.Ops, cmd)
	if err != nil {
		return ApplyBenchResult{}, err
	}
	res := ApplyBenchResult{
		Nodes: cfg.Nodes, Ops: cfg.Ops, Concurrency: cfg.Concurrency, ValueBytes: cfg.ValueBytes, Sync: cfg.Sync,
		RaftPerSec: rr.PerSecond(), FSMPerSec: fr.PerSecond(),
		RaftP50Ms: ms(rr.P50), RaftP99Ms: ms(rr.P99),
		FSMP50Us: float64(fr.P50) / float64(time.Microsecond), FSMP99Us: float64(fr.P99) / float64(time.Microsecond),
	}
	if res.FSMPerSec > 0 {
		res.Ratio = res.RaftPerSec / res.FSMPerSec
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
