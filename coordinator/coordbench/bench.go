// Package coordbench measures the coordinator at scale: a Raft cluster of
// in-process nodes (real hashicorp/raft over loopback TCP, raft-boltdb on
// disk), thousands of simulated workers registering and reporting progress
// over gRPC, and many jobs. It backs `loom bench coordinator`.
package coordbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/coordinator"
	"github.com/loomtrain/loom/coordinator/consensus"
)

// Config sizes a run.
type Config struct {
	Nodes       int  // coordinator nodes (odd), default 3
	Workers     int  // simulated workers, default 10000
	Jobs        int  // jobs, default 100; Workers must be a multiple
	Rounds      int  // progress reports per worker, default 3
	Concurrency int  // concurrent client calls, default 64
	NoSync      bool // skip fsync of the Raft log (faster, unsafe)
	Dir         string
	Logger      *slog.Logger
}

// Result is what a run measured. Latencies are in milliseconds.
type Result struct {
	Nodes   int  `json:"nodes"`
	Workers int  `json:"workers"`
	Jobs    int  `json:"jobs"`
	Rounds  int  `json:"rounds"`
	NoSync  bool `json:"no_sync"`

	// Registration: one worker-up command per worker through Raft, against
	// the same commands applied to the state machine alone.
	RaftApplyPerSec float64 `json:"raft_apply_per_sec"`
	FSMApplyPerSec  float64 `json:"fsm_apply_per_sec"`

	SubmitP50 float64 `json:"submit_p50_ms"`
	SubmitP99 float64 `json:"submit_p99_ms"`
	// ScheduleSeconds: from the last submit until every job runs.
	ScheduleSeconds float64 `json:"schedule_seconds"`

	ReportP50       float64 `json:"report_progress_p50_ms"`
	ReportP99       float64 `json:"report_progress_p99_ms"`
	ReportsPerSec   float64 `json:"reports_per_sec"` // until every job shows the last step
	GetJobP50       float64 `json:"get_job_p50_ms"`
	GetJobP99       float64 `json:"get_job_p99_ms"`
	FailoverSeconds float64 `json:"failover_seconds"` // leader killed → a new leader runs its duties
	JobsAfter       int     `json:"jobs_after_failover"`

	HeapMiB     float64 `json:"heap_mib"`     // live heap of the whole process (all replicas, servers, clients)
	StateMiB    float64 `json:"state_mib"`    // one replica's encoded state (a snapshot's size)
	SnapshotSec float64 `json:"snapshot_sec"` // time to encode that snapshot
}

func (c *Config) defaults() error {
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.Workers == 0 {
		c.Workers = 10000
	}
	if c.Jobs == 0 {
		c.Jobs = 100
	}
	if c.Rounds == 0 {
		c.Rounds = 3
	}
	if c.Concurrency == 0 {
		c.Concurrency = 64
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Workers%c.Jobs != 0 {
		return fmt.Errorf("workers (%d) must be a multiple of jobs (%d)", c.Workers, c.Jobs)
	}
	return nil
}

type member struct {
	raft   *consensus.Node
	fsm    *coordinator.FSM
	srv    *coordinator.Server
	node   *coordinator.Node
	g      *grpc.Server
	addr   string
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (m *member) stop() {
	m.cancel()
	m.g.Stop()
	m.wg.Wait()
	m.raft.Close()
}

// Run performs one measurement.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "loom-coordbench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	res := &Result{Nodes: cfg.Nodes, Workers: cfg.Workers, Jobs: cfg.Jobs, Rounds: cfg.Rounds, NoSync: cfg.NoSync}
	members, err := startCluster(dir, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, m := range members {
			if m != nil {
				m.stop()
			}
		}
	}()
	lead, err := waitLeader(members, 30*time.Second)
	if err != nil {
		return nil, err
	}
	if err := waitNodes(members[lead].fsm, cfg.Nodes, 30*time.Second); err != nil {
		return nil, err
	}
	conns := make([]*grpc.ClientConn, len(members))
	for i, m := range members {
		cc, err := grpc.NewClient(m.addr, coordinator.DialOptions("", nil)...)
		if err != nil {
			return nil, err
		}
		defer cc.Close()
		conns[i] = cc
	}

	// 1. Workers register: worker-up through Raft on the leader.
	ups := make([]*coordinator.Command, cfg.Workers)
	for i := range ups {
		id := workerID(i)
		ups[i] = &coordinator.Command{Time: time.Unix(1700000000, 0), WorkerUp: &coordinator.WorkerUp{Worker: coordinator.WorkerInfo{
			ID: id, Addr: "10.0." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250) + ":7000", Host: "host-" + strconv.Itoa(i/8), GPUs: 1}}}
	}
	start := time.Now()
	err = parallel(ctx, cfg.Workers, cfg.Concurrency, func(i int) error {
		_, err := members[lead].srv.Apply(ctx, ups[i])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("register workers: %w", err)
	}
	res.RaftApplyPerSec = float64(cfg.Workers) / time.Since(start).Seconds()
	res.FSMApplyPerSec, err = fsmOnly(ups)
	if err != nil {
		return nil, err
	}

	// 2. Jobs are submitted over gRPC to every node in turn.
	per := cfg.Workers / cfg.Jobs
	lat := make([]time.Duration, cfg.Jobs)
	err = parallel(ctx, cfg.Jobs, 8, func(i int) error {
		t0 := time.Now()
		_, err := loompb.NewJobsClient(conns[i%len(conns)]).SubmitJob(ctx, &loompb.SubmitJobRequest{ManifestYaml: manifest(i, per)})
		lat[i] = time.Since(t0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("submit: %w", err)
	}
	res.SubmitP50, res.SubmitP99 = percentiles(lat)
	start = time.Now()
	if err := waitCond(members[lead].fsm, 120*time.Second, func(s *coordinator.State) bool {
		for _, j := range s.Jobs {
			if j.State != coordinator.Running {
				return false
			}
		}
		return len(s.Jobs) == cfg.Jobs
	}); err != nil {
		return nil, fmt.Errorf("scheduling %d jobs: %w", cfg.Jobs, err)
	}
	res.ScheduleSeconds = time.Since(start).Seconds()

	// 3. Every worker reports Rounds steps over gRPC, to the node it is
	// spread onto; reports are batched per node.
	gens := map[string]int64{}
	jobOf := map[string]string{}
	members[lead].fsm.Read(func(s *coordinator.State) {
		for _, j := range s.Jobs {
			gens[j.Name] = j.Generation
			for _, w := range j.Workers {
				jobOf[w] = j.Name
			}
		}
	})
	lat = make([]time.Duration, cfg.Workers*cfg.Rounds)
	start = time.Now()
	for r := 1; r <= cfg.Rounds; r++ {
		err = parallel(ctx, cfg.Workers, cfg.Concurrency, func(i int) error {
			id := workerID(i)
			job := jobOf[id]
			t0 := time.Now()
			_, err := loompb.NewWorkersClient(conns[i%len(conns)]).ReportProgress(ctx, &loompb.ReportProgressRequest{
				WorkerId: id, Job: job, Generation: gens[job], Step: int64(r), Losses: map[string]float64{"lm": 4 - 0.1*float64(r)},
				TokensPerSec: 1000, StepTimeSeconds: 0.5, SamplesConsumed: int64(r * 2 * per)})
			lat[(r-1)*cfg.Workers+i] = time.Since(t0)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("report progress: %w", err)
		}
	}
	if err := waitCond(members[lead].fsm, 60*time.Second, func(s *coordinator.State) bool {
		for _, j := range s.Jobs {
			if j.Step != int64(cfg.Rounds) {
				return false
			}
		}
		return true
	}); err != nil {
		return nil, fmt.Errorf("progress to reach every job: %w", err)
	}
	res.ReportsPerSec = float64(cfg.Workers*cfg.Rounds) / time.Since(start).Seconds()
	res.ReportP50, res.ReportP99 = percentiles(lat)

	// 4. Reads from every node.
	lat = make([]time.Duration, 1000)
	err = parallel(ctx, len(lat), 16, func(i int) error {
		t0 := time.Now()
		_, err := loompb.NewJobsClient(conns[i%len(conns)]).GetJob(ctx, &loompb.GetJobRequest{Job: jobName(i % cfg.Jobs)})
		lat[i] = time.Since(t0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get job: %w", err)
	}
	res.GetJobP50, res.GetJobP99 = percentiles(lat)

	// 5. Memory and snapshot size.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapMiB = float64(ms.HeapAlloc) / (1 << 20)
	t0 := time.Now()
	var n int
	members[lead].fsm.Read(func(s *coordinator.State) {
		b, _ := s.Marshal()
		n = len(b)
	})
	res.SnapshotSec = time.Since(t0).Seconds()
	res.StateMiB = float64(n) / (1 << 20)

	// 6. Kill the leader.
	killed := time.Now()
	members[lead].stop()
	members[lead] = nil
	newLead, err := waitLeader(members, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("failover: %w", err)
	}
	res.FailoverSeconds = time.Since(killed).Seconds()
	members[newLead].fsm.Read(func(s *coordinator.State) { res.JobsAfter = len(s.Jobs) })
	return res, nil
}

func workerID(i int) string { return fmt.Sprintf("w%05d", i) }
func jobName(i int) string  { return fmt.Sprintf("job-%03d", i) }

func manifest(i, world int) []byte {
	return []byte(fmt.Sprintf(`name: %s
recipe: vila
model: {size: tiny}
datasets: [{name: coyo, uri: "s3://data/coyo"}]
global_batch: %d
elastic: {min: %d, max: %d}
stages: [{name: align, steps: 1000}, {name: sft, steps: 500}]
`, jobName(i), 2*world, world, world))
}

// fsmOnly applies the same commands to a bare state machine, through the
// log encoding, as the baseline for Raft's throughput.
func fsmOnly(cmds []*coordinator.Command) (float64, error) {
	enc := make([][]byte, len(cmds))
	for i, c := range cmds {
		b, err := c.Encode()
		if err != nil {
			return 0, err
		}
		enc[i] = b
	}
	// Best of three fresh runs: the first one also pays for warming up.
	best := 0.0
	for range 3 {
		f := coordinator.NewFSM()
		start := time.Now()
		for i, b := range enc {
			if r := f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: b}).(coordinator.Result); r.Code != coordinator.OK {
				return 0, fmt.Errorf("baseline apply: %s", r.Msg)
			}
		}
		best = max(best, float64(len(enc))/time.Since(start).Seconds())
	}
	return best, nil
}

func percentiles(d []time.Duration) (p50, p99 float64) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	at := func(q float64) float64 {
		return float64(s[int(q*float64(len(s)-1))].Microseconds()) / 1000
	}
	return at(0.50), at(0.99)
}

// parallel runs fn(0..n-1) on k goroutines and returns the first error.
func parallel(ctx context.Context, n, k int, fn func(i int) error) error {
	var next atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && first.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return ctx.Err()
}

func waitCond(f *coordinator.FSM, timeout time.Duration, cond func(*coordinator.State) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		ok := false
		f.Read(func(s *coordinator.State) { ok = cond(s) })
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not reached within %s", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitNodes(f *coordinator.FSM, n int, timeout time.Duration) error {
	return waitCond(f, timeout, func(s *coordinator.State) bool { return len(s.Nodes) == n })
}

func waitLeader(ms []*member, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for i, m := range ms {
			if m != nil && m.node.Leading() {
				return i, nil
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return -1, errors.New("no leader")
}

func startCluster(dir string, cfg Config) ([]*member, error) {
	n := cfg.Nodes
	lns := make([]net.Listener, n)
	var peers []consensus.Peer
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns[i] = ln
		peers = append(peers, consensus.Peer{ID: "c" + strconv.Itoa(i), Addr: ln.Addr().String()})
	}
	tuning := raft.DefaultConfig()
	tuning.HeartbeatTimeout = 500 * time.Millisecond
	tuning.ElectionTimeout = 500 * time.Millisecond
	tuning.LeaderLeaseTimeout = 250 * time.Millisecond
	tuning.CommitTimeout = 5 * time.Millisecond
	tuning.MaxAppendEntries = 256
	ms := make([]*member, n)
	for i := range n {
		m := &member{fsm: coordinator.NewFSM()}
		rn, err := consensus.Open(consensus.Config{ID: peers[i].ID, DataDir: filepath.Join(dir, peers[i].ID), Listener: lns[i],
			Bootstrap: peers, Logger: cfg.Logger, Tuning: tuning, NoSync: cfg.NoSync}, m.fsm)
		if err != nil {
			for _, x := range ms[:i] {
				x.stop()
			}
			return nil, err
		}
		m.raft = rn
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		m.addr = lis.Addr().String()
		m.srv = coordinator.NewServer(coordinator.ServerConfig{NodeID: peers[i].ID, Raft: rn, FSM: m.fsm, Logger: cfg.Logger,
			ApplyTimeout: 30 * time.Second, ProgressFlush: 100 * time.Millisecond})
		m.g = grpc.NewServer()
		m.srv.Register(m.g)
		m.node, err = coordinator.NewNode(coordinator.NodeConfig{ID: peers[i].ID, APIAddr: m.addr, Raft: rn, FSM: m.fsm,
			Server: m.srv, Tick: 200 * time.Millisecond, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		m.cancel = cancel
		m.wg.Add(2)
		go func() { defer m.wg.Done(); _ = m.g.Serve(lis) }()
		go func() { defer m.wg.Done(); m.node.Run(ctx) }()
		ms[i] = m
	}
	return ms, nil
}
