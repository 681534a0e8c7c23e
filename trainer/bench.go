package trainer

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/collective/inproc"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
)

// BenchOptions configures Bench.
type BenchOptions struct {
	Recipe  string // recipe whose first stage is timed (default "lwm": every parameter trains)
	Size    string // model size (default "small")
	Worlds  []int  // in-process world sizes (default 1, 2, 4)
	PerRank int    // samples per rank per step (weak scaling; default 4)
	Steps   int    // timed steps per world size, after one warm-up (default 5)
	Dir     string // checkpoint directory (default a temporary one, removed after)
	// Shard, when set (api.ShardLevels: "optimizer" or "gradients"), also
	// measures every world size above 1 with that parallelism.shard, side
	// by side with plain data parallelism.
	Shard string
}

// BenchWorld is the measurement at one world size.
type BenchWorld struct {
	World int `json:"world"`
	// TokensPerSecPerWorker is the mean over ranks and steps of the
	// tokens a rank processed over the step time.
	TokensPerSecPerWorker float64 `json:"tokens_per_sec_per_worker"`
	// Ratio is TokensPerSecPerWorker over the 1-worker value.
	Ratio float64 `json:"ratio_vs_1"`
	// StepSeconds is the median step time; CommShare the share of step
	// time spent waiting on collectives (token count and gradient
	// all-reduce), summed over steps and ranks.
	StepSeconds float64 `json:"step_seconds"`
	CommShare   float64 `json:"comm_share"`
	// The same world measured in the same run with the all-reduce started
	// only after the backward pass (no overlap): the baseline of the
	// overlap. Zero at world 1.
	StepSecondsNoOverlap float64 `json:"step_seconds_no_overlap,omitempty"`
	CommShareNoOverlap   float64 `json:"comm_share_no_overlap,omitempty"`
	// OptimizerBytes is the AdamW state rank 0 holds (its moment buffers).
	OptimizerBytes int64 `json:"optimizer_bytes"`
	// With BenchOptions.Shard, the same world sharded: its median step,
	// tokens/s per worker over the plain run's (≥ 1: as fast), and rank
	// 0's optimizer state over the plain run's.
	StepSecondsSharded    float64 `json:"step_seconds_sharded,omitempty"`
	ShardedThroughput     float64 `json:"sharded_throughput_ratio,omitempty"`
	ShardedOptimizerRatio float64 `json:"sharded_optimizer_ratio,omitempty"`
}

// BenchResult is what Bench measured.
type BenchResult struct {
	Recipe, Stage, Size string
	Params              int          `json:"params"`
	Worlds              []BenchWorld `json:"worlds"`
	Shard               string       `json:"shard,omitempty"`
	// Checkpoint: the time a checkpoint blocks training when saved
	// synchronously (snapshot + upload + commit) and asynchronously (the
	// snapshot only), median of 3 each, and async/sync.
	CheckpointSyncSeconds  float64 `json:"checkpoint_sync_seconds"`
	CheckpointAsyncSeconds float64 `json:"checkpoint_async_seconds"`
	CheckpointRatio        float64 `json:"checkpoint_ratio_async_vs_sync"`
	CheckpointBytes        int64   `json:"checkpoint_bytes"`
}

// Bench measures training throughput per worker at several in-process
// world sizes (the ranks are goroutines of this process sharing its cores,
// connected by collective/inproc), the share of step time spent in
// collectives, and how long a checkpoint blocks training synchronously
// (write and commit before going on) and asynchronously (copy, then
// upload in the background). Progress lines go to log.
func Bench(ctx context.Context, o BenchOptions, log io.Writer) (*BenchResult, error) {
	if o.Recipe == "" {
		o.Recipe = "lwm"
	}
	if o.Size == "" {
		o.Size = "small"
	}
	if len(o.Worlds) == 0 {
		o.Worlds = []int{1, 2, 4}
	}
	if o.PerRank <= 0 {
		o.PerRank = 4
	}
	if o.Steps <= 0 {
		o.Steps = 5
	}
	if level := (api.Parallelism{Shard: o.Shard}).ShardLevel(); level < 0 {
		return nil, fmt.Errorf("trainer: bench: shard %q: want one of %s", o.Shard, strings.Join(api.ShardLevels, ", "))
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "loom-bench-train-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	r, err := Lookup(o.Recipe)
	if err != nil {
		return nil, err
	}
	data := shard.NewMemStore()
	maxWorld := 0
	for _, w := range o.Worlds {
		maxWorld = max(maxWorld, w)
	}
	n := (o.Steps + 1) * o.PerRank * maxWorld
	for _, k := range r.Stages[0].Kinds {
		fmt.Fprintf(log, "generating %d %s samples\n", n, k)
		if _, err := synth.Write(ctx, data, "data/"+string(k), k, n, 1, shard.WriterOptions{Kind: k, TempDir: dir}); err != nil {
			return nil, err
		}
	}
	open := func(_ context.Context, d api.Dataset) (shard.ObjectStore, string, error) {
		return data, "data/" + d.Name, nil
	}
	res := &BenchResult{Recipe: o.Recipe, Size: o.Size, Stage: r.Stages[0].Name, Shard: o.Shard}
	var tps1 float64
	for _, world := range o.Worlds {
		m, err := ExampleManifest(o.Recipe, o.Size, func(k shard.Kind) string { return "s3://bench/" + string(k) }, int64(o.Steps+1), o.PerRank*world)
		if err != nil {
			return nil, err
		}
		m.Stages = m.Stages[:1]
		m.Stages[0].Overrides.MicroBatch = &o.PerRank
		var base BenchWorld
		if world > 1 {
			if base, _, err = benchWorld(ctx, m, world, open, false); err != nil {
				return nil, fmt.Errorf("world %d without overlap: %w", world, err)
			}
		}
		bw, params, err := benchWorld(ctx, m, world, open, true)
		if err != nil {
			return nil, fmt.Errorf("world %d: %w", world, err)
		}
		bw.StepSecondsNoOverlap, bw.CommShareNoOverlap = base.StepSeconds, base.CommShare
		if world > 1 && o.Shard != "" && o.Shard != "none" {
			sm := *m
			sm.Parallelism.Shard = o.Shard
			sw, _, err := benchWorld(ctx, &sm, world, open, true)
			if err != nil {
				return nil, fmt.Errorf("world %d with shard %s: %w", world, o.Shard, err)
			}
			bw.StepSecondsSharded = sw.StepSeconds
			bw.ShardedThroughput = sw.TokensPerSecPerWorker / bw.TokensPerSecPerWorker
			bw.ShardedOptimizerRatio = float64(sw.OptimizerBytes) / float64(bw.OptimizerBytes)
			fmt.Fprintf(log, "world %d, shard %s: step %.3fs, throughput %.2fx plain, optimizer state %.3fx plain\n",
				world, o.Shard, sw.StepSeconds, bw.ShardedThroughput, bw.ShardedOptimizerRatio)
		}
		res.Params = params
		if tps1 == 0 {
			tps1 = bw.TokensPerSecPerWorker
		}
		bw.Ratio = bw.TokensPerSecPerWorker / tps1
		fmt.Fprintf(log, "world %d: %.0f tokens/s per worker, step %.3fs, comm %.1f%% (without overlap: step %.3fs, comm %.1f%%)\n",
			world, bw.TokensPerSecPerWorker, bw.StepSeconds, 100*bw.CommShare, bw.StepSecondsNoOverlap, 100*bw.CommShareNoOverlap)
		res.Worlds = append(res.Worlds, bw)
	}
	if err := benchCheckpoint(ctx, o, dir, open, res); err != nil {
		return nil, err
	}
	return res, nil
}

func benchWorld(ctx context.Context, m *api.Manifest, world int, open func(context.Context, api.Dataset) (shard.ObjectStore, string, error), overlap bool) (BenchWorld, int, error) {
	bw := BenchWorld{World: world}
	net := inproc.NewNetwork(world, 2)
	var wg sync.WaitGroup
	errs := make([]error, world)
	type obs struct{ tps, step, comm []float64 }
	got := make([]obs, world)
	params := 0
	for rank := 0; rank < world; rank++ {
		wg.Add(1)
		go func(rank int) {
			defer wg.Done()
			j := Job{Manifest: m, Rank: rank, World: world, Store: shard.NewMemStore(), OpenDataset: open}
			if world > 1 {
				c, err := collective.New(net.Transport(rank), collective.Config{Job: "bench", Timeout: time.Minute})
				if err != nil {
					errs[rank] = err
					return
				}
				defer c.Close()
				j.Comm = c
			}
			run, err := NewRun(ctx, j, nil)
			if err != nil {
				errs[rank] = err
				return
			}
			defer run.Close()
			run.noOverlap = !overlap
			if rank == 0 {
				params = run.model.Params().Count()
				n := len(run.params)
				if run.zero != nil {
					n = len(run.zero.views)
				}
				for i := range n {
					m, v := run.opt.Moments(i)
					bw.OptimizerBytes += 4 * int64(len(m)+len(v))
				}
			}
			for s := 0; !run.Done(); s++ {
				p, err := run.Step(ctx)
				if err != nil {
					errs[rank] = err
					return
				}
				if s == 0 {
					continue // warm-up
				}
				got[rank].tps = append(got[rank].tps, p.TokensPerSec)
				got[rank].step = append(got[rank].step, p.StepTime.Seconds())
				got[rank].comm = append(got[rank].comm, p.CommWait.Seconds())
			}
		}(rank)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return bw, 0, err
		}
	}
	var tps, step, comm, count float64
	var steps []float64
	for _, g := range got {
		for i := range g.tps {
			tps += g.tps[i]
			step += g.step[i]
			comm += g.comm[i]
			count++
			steps = append(steps, g.step[i])
		}
	}
	bw.TokensPerSecPerWorker = tps / count
	bw.CommShare = comm / step
	bw.StepSeconds = median(steps)
	return bw, params, nil
}

func benchCheckpoint(ctx context.Context, o BenchOptions, dir string, open func(context.Context, api.Dataset) (shard.ObjectStore, string, error), res *BenchResult) error {
	m, err := ExampleManifest(o.Recipe, o.Size, func(k shard.Kind) string { return "s3://bench/" + string(k) }, 10, o.PerRank)
	if err != nil {
		return err
	}
	m.Stages = m.Stages[:1]
	store, err := shard.NewFSStore(dir + "/ckpt")
	if err != nil {
		return err
	}
	run, err := NewRun(ctx, Job{Manifest: m, World: 1, Store: store, CheckpointPrefix: "ckpt", OpenDataset: open}, nil)
	if err != nil {
		return err
	}
	defer run.Close()
	var syncT, asyncT []float64
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		r, err := run.SaveSync(ctx)
		if err != nil {
			return err
		}
		syncT = append(syncT, time.Since(t0).Seconds())
		res.CheckpointBytes = 0
		for _, ob := range r.Ref.Objects {
			res.CheckpointBytes += ob.Size
		}
		t0 = time.Now()
		ch, err := run.Checkpoint(ctx)
		if err != nil {
			return err
		}
		asyncT = append(asyncT, time.Since(t0).Seconds())
		if r := <-ch; r.Err != nil {
			return r.Err
		}
	}
	res.CheckpointSyncSeconds, res.CheckpointAsyncSeconds = median(syncT), median(asyncT)
	res.CheckpointRatio = res.CheckpointAsyncSeconds / res.CheckpointSyncSeconds
	return nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// WriteBenchTable prints res as Markdown tables.
func WriteBenchTable(w io.Writer, res *BenchResult) {
	fmt.Fprintf(w, "recipe %s, stage %s, size %s (%d parameters)\n\n", res.Recipe, res.Stage, res.Size, res.Params)
	fmt.Fprintln(w, "| workers | tokens/s per worker | ratio vs 1 worker | median step (s) | comm share of step time | without overlap: median step (s) | without overlap: comm share |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	for _, b := range res.Worlds {
		no := "| – | – |"
		if b.World > 1 {
			no = fmt.Sprintf("| %.3f | %.1f%% |", b.StepSecondsNoOverlap, 100*b.CommShareNoOverlap)
		}
		fmt.Fprintf(w, "| %d | %.0f | %.2f | %.3f | %.1f%% %s\n", b.World, b.TokensPerSecPerWorker, b.Ratio, b.StepSeconds, 100*b.CommShare, no)
	}
	if res.Shard != "" && res.Shard != "none" {
		fmt.Fprintf(w, "\nparallelism.shard %s against plain data parallelism at the same world size\n\n", res.Shard)
		fmt.Fprintln(w, "| workers | median step (s), sharded | plain | throughput ratio (sharded / plain) | optimizer state per worker, sharded | plain | ratio |")
		fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
		for _, b := range res.Worlds {
			if b.World > 1 {
				fmt.Fprintf(w, "| %d | %.3f | %.3f | %.2f | %s | %s | %.3f |\n", b.World, b.StepSecondsSharded, b.StepSeconds, b.ShardedThroughput,
					shard.HumanBytes(int64(b.ShardedOptimizerRatio*float64(b.OptimizerBytes))), shard.HumanBytes(b.OptimizerBytes), b.ShardedOptimizerRatio)
			}
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| checkpoint (blocks training) | seconds | ratio vs sync |")
	fmt.Fprintln(w, "| --- | --- | --- |")
	fmt.Fprintf(w, "| sync (snapshot + write %s + commit) | %.4f | 1.00 |\n", shard.HumanBytes(res.CheckpointBytes), res.CheckpointSyncSeconds)
	fmt.Fprintf(w, "| async (snapshot; upload in the background) | %.4f | %.3f |\n", res.CheckpointAsyncSeconds, res.CheckpointRatio)
}
