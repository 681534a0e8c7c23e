package collbench

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/collective/inproc"
	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/kernels/kbench"
)

// RingAttnOptions configures RingAttention.
type RingAttnOptions struct {
	World         int   // ranks for the layout comparison, default 4
	TokensPerRank int   // default 2048
	Heads         int   // default 4
	HeadDim       int   // default 64
	Iters         int   // repetitions (minimum for the step timings, median for the wall), default 3
	MemWorlds     []int // ring sizes for the memory measurement, default 1, 2, 4, 8
	MemTokens     int   // tokens per rank for the memory measurement, default 512
	// PinnedWorld is the ring size of the measured comparison, in which
	// every rank runs on its own core: default (and at most) the number
	// of CPUs this process may use; 1 or less skips it.
	PinnedWorld int
}

func (o *RingAttnOptions) defaults() {
	if o.World == 0 {
		o.World = 4
	}
	if o.TokensPerRank == 0 {
		o.TokensPerRank = 2048
	}
	if o.Heads == 0 {
		o.Heads = 4
	}
	if o.HeadDim == 0 {
		o.HeadDim = 64
	}
	if o.Iters == 0 {
		o.Iters = 3
	}
	if len(o.MemWorlds) == 0 {
		o.MemWorlds = []int{1, 2, 4, 8}
	}
	if o.MemTokens == 0 {
		o.MemTokens = 512
	}
}

// LayoutRow is the causal forward+backward cost of one layout.
type LayoutRow struct {
	Layout string `json:"layout"`
	World  int    `json:"world"`
	Total  int    `json:"total_tokens"`
	// CriticalMS is the time of the ring's critical path, computed from
	// each (rank, step) block's measured kernel CPU time (one thread, timed
	// one at a time, minimum of Iters interleaved runs) through the ring's dependencies (CriticalPath):
	// what the ring takes when every rank has its own core.
	CriticalMS float64 `json:"critical_path_ms"`
	// Imbalance is max over ranks / mean over ranks of the summed kernel
	// time (forward + backward) in that measurement.
	Imbalance float64   `json:"imbalance"`
	RankMS    []float64 `json:"rank_compute_ms"`
	// WallMS is the median wall time of a real forward+backward over the
	// in-process transport with all ranks running at once on this
	// machine's cores (fewer cores than ranks: the layouts then differ
	// little, because an idle rank's core serves a busy one).
	WallMS float64 `json:"shared_core_wall_ms"`
	// Speedup is a model: contiguous's critical path over this layout's.
	Speedup float64 `json:"critical_path_speedup_vs_contiguous,omitempty"`
}

// PinnedRow is one layout measured with every rank on its own core: each
// rank's goroutine locked to an OS thread pinned (sched_setaffinity) to
// a CPU of its own, one kernel thread per rank, over the in-process
// transport. Beside the measurement, the same ring's modelled critical
// path (CriticalPath of per-step times measured alone).
type PinnedRow struct {
	Layout string `json:"layout"`
	World  int    `json:"world"`
	Total  int    `json:"total_tokens"`
	CPUs   []int  `json:"cpus"` // rank r runs on CPUs[r]
	// WallMS is the median over Iters runs, interleaved with the other
	// layout's; WallMinMS and WallMaxMS their range.
	WallMS    float64 `json:"measured_wall_ms"`
	WallMinMS float64 `json:"measured_wall_min_ms"`
	WallMaxMS float64 `json:"measured_wall_max_ms"`
	// Speedup is contiguous's median wall over this layout's: measured.
	Speedup float64 `json:"measured_speedup_vs_contiguous"`
	// ModelMS and ModelSpeedup are the critical-path model's figures for
	// the same ring: a model (free communication, no interference).
	ModelMS      float64 `json:"modelled_critical_path_ms"`
	ModelSpeedup float64 `json:"modelled_speedup_vs_contiguous"`
}

// MemRow is the heap a rank needs for one forward+backward at a ring size.
type MemRow struct {
	World         int     `json:"world"`
	TokensPerRank int     `json:"tokens_per_rank"`
	PeakMiB       float64 `json:"peak_heap_per_rank_mib"`
}

// RingAttnResult is what RingAttention measured.
type RingAttnResult struct {
	Options RingAttnOptions `json:"options"`
	Layouts []LayoutRow     `json:"layouts"`
	Memory  []MemRow        `json:"memory"`
	// Pinned is the measured comparison, one rank per core; PinnedSkipped
	// says why it is missing, if it is.
	Pinned        []PinnedRow `json:"pinned"`
	PinnedSkipped string      `json:"pinned_skipped,omitempty"`
	Cores         int         `json:"cores"`
	Clock         string      `json:"step_clock"` // what the step timings measure
}

type rankData struct{ q, k, v, do, o, lse, dq, dk, dv []float32 }

func newRankData(r *rand.Rand, rows, h, d int) *rankData {
	x := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(r.NormFloat64())
		}
		return s
	}
	n := rows * h * d
	return &rankData{q: x(n), k: x(n), v: x(n), do: x(n), o: make([]float32, n), lse: make([]float32, rows*h),
		dq: make([]float32, n), dk: make([]float32, n), dv: make([]float32, n)}
}

// RingAttention runs the ring-attention benchmark.
func RingAttention(ctx context.Context, o RingAttnOptions, progress io.Writer) (*RingAttnResult, error) {
	o.defaults()
	res := &RingAttnResult{Options: o, Cores: runtime.NumCPU(), Clock: threadClockName}
	total := o.World * o.TokensPerRank
	prev := kernels.MaxThreads()
	defer kernels.SetMaxThreads(prev)
	layouts := []collective.Layout{collective.Contiguous, collective.Zigzag}
	var cfgs []collective.RingAttnConfig
	for _, l := range layouts {
		cfgs = append(cfgs, collective.RingAttnConfig{Total: total, Heads: o.Heads, HeadDim: o.HeadDim, Causal: true, Layout: l})
	}
	kernels.SetMaxThreads(1)
	fwds, bwds := stepTimes(cfgs, o.World, o.Iters)
	kernels.SetMaxThreads(prev)
	for c, l := range layouts {
		cfg, fwd, bwd := cfgs[c], fwds[c], bwds[c]
		row := LayoutRow{Layout: l.String(), World: o.World, Total: total}
		row.CriticalMS = CriticalPath(fwd, false) + CriticalPath(bwd, true)
		var sum, hi float64
		for r := range o.World {
			t := 0.0
			for s := range o.World {
				t += fwd[r][s] + bwd[r][s]
			}
			row.RankMS = append(row.RankMS, t)
			sum += t
			hi = max(hi, t)
		}
		row.Imbalance = hi / (sum / float64(o.World))
		wall, err := distributedWall(ctx, cfg, o.World, o.Iters)
		if err != nil {
			return nil, err
		}
		row.WallMS = wall
		res.Layouts = append(res.Layouts, row)
		if progress != nil {
			fmt.Fprintf(progress, "ringattention %-10s critical path %.1f ms, imbalance %.3f, shared-core wall %.1f ms\n", l, row.CriticalMS, row.Imbalance, row.WallMS)
		}
	}
	if len(res.Layouts) == 2 && res.Layouts[1].CriticalMS > 0 {
		res.Layouts[0].Speedup = 1 // the contiguous baseline, against itself
		res.Layouts[1].Speedup = res.Layouts[0].CriticalMS / res.Layouts[1].CriticalMS
	}
	pinned, skipped, err := pinnedLayouts(ctx, o)
	if err != nil {
		return nil, err
	}
	res.Pinned, res.PinnedSkipped = pinned, skipped
	if progress != nil {
		for _, p := range pinned {
			fmt.Fprintf(progress, "ringattention pinned %-10s %d ranks on CPUs %v: wall %.1f ms (median; %.1f–%.1f), modelled %.1f ms\n",
				p.Layout, p.World, p.CPUs, p.WallMS, p.WallMinMS, p.WallMaxMS, p.ModelMS)
		}
		if skipped != "" {
			fmt.Fprintf(progress, "ringattention pinned comparison skipped: %s\n", skipped)
		}
	}
	for _, w := range o.MemWorlds {
		m, err := memoryPerRank(ctx, w, o.MemTokens, o.Heads, o.HeadDim)
		if err != nil {
			return nil, err
		}
		res.Memory = append(res.Memory, m)
		if progress != nil {
			fmt.Fprintf(progress, "ringattention memory: %d ranks × %d tokens: peak %.2f MiB/rank\n", w, o.MemTokens, m.PeakMiB)
		}
	}
	return res, nil
}

// stepTimes times, for every layout, rank and ring step, the kernel calls
// that rank makes at that step (collective.StepBlocks), forward and
// backward, one at a time on this goroutine, in CPU time of its thread
// (threadClock; wall time where that is not available). The repetitions are
// interleaved across layouts, ranks and steps, so that load from other
// processes hits them alike, and the minimum of iters runs is kept (in
// milliseconds): the time of the work itself, not of the interference.
func stepTimes(cfgs []collective.RingAttnConfig, world, iters int) (fwd, bwd [][][]float64) {
	cfg0 := cfgs[0]
	h, d := cfg0.Heads, cfg0.HeadDim
	rows := cfg0.Total / world
	rng := rand.New(rand.NewPCG(3, 4))
	a := newRankData(rng, rows, h, d)
	kv := newRankData(rng, rows, h, d)
	delta := make([]float32, rows*h)
	ob, lb := make([]float32, rows*h*d), make([]float32, rows*h)
	scale := float32(1 / math.Sqrt(float64(d)))
	// A real lse and delta so the backward does the same arithmetic.
	kernels.AttnBlockForward(a.q, kv.k, kv.v, rows, rows, h, d, scale, nil, a.o, a.lse)
	kernels.AttnDelta(a.o, a.do, rows, h, d, delta)
	lse0, o0 := slices.Clone(a.lse), slices.Clone(a.o)
	hd := h * d
	fwd, bwd = make([][][]float64, len(cfgs)), make([][][]float64, len(cfgs))
	for c := range cfgs {
		fwd[c], bwd[c] = make([][]float64, world), make([][]float64, world)
		for r := range world {
			fwd[c][r], bwd[c][r] = make([]float64, world), make([]float64, world)
			for s := range world {
				fwd[c][r][s], bwd[c][r][s] = math.Inf(1), math.Inf(1)
			}
		}
	}
	var clk threadClock
	clk.lock() // one thread runs every kernel call (kernels.MaxThreads is 1)
	defer clk.unlock()
	for range iters {
		for c, cfg := range cfgs {
			for r := range world {
				qpos := cfg.Layout.Positions(cfg.Total, world, r)
				for s := range world {
					kpos := cfg.Layout.Positions(cfg.Total, world, (r-s+world)%world)
					blocks := collective.StepBlocks(cfg.Causal, cfg.Layout, cfg.Total, world, r, s)
					mask := func(b collective.Block) *kernels.AttnMask {
						if !b.Causal {
							return nil
						}
						return &kernels.AttnMask{Causal: true, QPos: qpos[b.Q0 : b.Q0+b.NQ], KPos: kpos[b.K0 : b.K0+b.NK]}
					}
					copy(a.lse, lse0)
					copy(a.o, o0)
					t0 := clk.now()
					for _, b := range blocks {
						q0, k0 := b.Q0*hd, b.K0*hd
						kernels.AttnBlockForward(a.q[q0:q0+b.NQ*hd], kv.k[k0:k0+b.NK*hd], kv.v[k0:k0+b.NK*hd], b.NQ, b.NK, h, d, scale, mask(b), ob[:b.NQ*hd], lb[:b.NQ*h])
						kernels.AttnMerge(a.o[q0:q0+b.NQ*hd], a.lse[b.Q0*h:(b.Q0+b.NQ)*h], ob[:b.NQ*hd], lb[:b.NQ*h], b.NQ, h, d)
					}
					t1 := clk.now()
					copy(a.lse, lse0)
					for _, b := range blocks {
						q0, k0 := b.Q0*hd, b.K0*hd
						kernels.AttnBlockBackward(a.q[q0:q0+b.NQ*hd], kv.k[k0:k0+b.NK*hd], kv.v[k0:k0+b.NK*hd], a.do[q0:q0+b.NQ*hd],
							a.lse[b.Q0*h:(b.Q0+b.NQ)*h], delta[b.Q0*h:(b.Q0+b.NQ)*h], b.NQ, b.NK, h, d, scale, mask(b),
							a.dq[q0:q0+b.NQ*hd], kv.dk[k0:k0+b.NK*hd], kv.dv[k0:k0+b.NK*hd])
					}
					t2 := clk.now()
					fwd[c][r][s] = min(fwd[c][r][s], ms(t1-t0))
					bwd[c][r][s] = min(bwd[c][r][s], ms(t2-t1))
				}
			}
		}
	}
	return fwd, bwd
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func median(x []float64) float64 {
	y := slices.Clone(x)
	slices.Sort(y)
	return y[len(y)/2]
}

// CriticalPath is the finishing time of a ring whose rank r spends t[r][s]
// computing at step s, with free communication, following the dependencies
// of RingAttentionForward (step s+1 needs the block the predecessor
// forwarded when it started step s) and, if backward, also those of
// RingAttentionBackward (step s+1 needs the dK/dV accumulator the
// predecessor finished at step s, and the last one must come home).
func CriticalPath(t [][]float64, backward bool) float64 {
	n := len(t)
	start := make([]float64, n)
	finish := make([]float64, n)
	for s := range n {
		ns := make([]float64, n)
		for r := range n {
			p := (r + n - 1) % n
			st := finish[r]
			if s > 0 {
				st = max(st, start[p]) // the block prev forwarded at its step s-1
				if backward {
					st = max(st, finish[p]) // the accumulator prev finished
				}
			}
			ns[r] = st
		}
		for r := range n {
			start[r] = ns[r]
			finish[r] = ns[r] + t[r][s]
		}
	}
	end := 0.0
	for r := range n {
		end = max(end, finish[r])
		if backward {
			end = max(end, finish[(r+n-1)%n]) // the last accumulator hop
		}
	}
	return end
}

// newRing is world ranks over the in-process transport, each with random
// q, k, v and dO of rows × h × d drawn from (rank, seed), and the func that
// closes them.
func newRing(world int, seed uint64, rows, h, d int) ([]*collective.Comm, []*rankData, func()) {
	net := inproc.NewNetwork(world, 1)
	comms := make([]*collective.Comm, world)
	data := make([]*rankData, world)
	for r := range comms {
		comms[r], _ = collective.New(net.Transport(r), collective.Config{Job: "bench", Timeout: time.Minute})
		data[r] = newRankData(rand.New(rand.NewPCG(uint64(r), seed)), rows, h, d)
	}
	return comms, data, func() {
		for _, c := range comms {
			c.Close()
		}
	}
}

// distributedWall runs forward+backward over the in-process transport with
// all ranks at once, iters times, and returns the median in milliseconds.
func distributedWall(ctx context.Context, cfg collective.RingAttnConfig, world, iters int) (float64, error) {
	rows := cfg.Total / world
	comms, data, closeRing := newRing(world, 5, rows, cfg.Heads, cfg.HeadDim)
	defer closeRing()
	var times []float64
	for range iters {
		t0 := time.Now()
		if err := fwdBwd(ctx, comms, cfg, data, nil); err != nil {
			return 0, err
		}
		times = append(times, ms(time.Since(t0)))
	}
	return median(times), nil
}

// fwdBwd runs one forward+backward on every rank at once. With cpus, rank
// r's goroutine runs on an OS thread pinned to cpus[r].
func fwdBwd(ctx context.Context, comms []*collective.Comm, cfg collective.RingAttnConfig, data []*rankData, cpus []int) error {
	errs := make([]error, len(comms))
	var wg sync.WaitGroup
	for r, c := range comms {
		wg.Go(func() {
			if cpus != nil {
				undo, err := pinThread(cpus[r])
				if err != nil {
					errs[r] = err
					return
				}
				defer undo()
			}
			x := data[r]
			if errs[r] = c.RingAttentionForward(ctx, cfg, x.q, x.k, x.v, x.o, x.lse); errs[r] != nil {
				return
			}
			errs[r] = c.RingAttentionBackward(ctx, cfg, x.q, x.k, x.v, x.o, x.lse, x.do, x.dq, x.dk, x.dv)
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			return fmt.Errorf("collbench: ring attention rank %d: %w", r, err)
		}
	}
	return nil
}

// pinnedLayouts measures both layouts with one rank per core (PinnedRow).
// The runs alternate between the layouts, so that load from other
// processes hits both alike.
func pinnedLayouts(ctx context.Context, o RingAttnOptions) ([]PinnedRow, string, error) {
	cpus, err := allowedCPUs()
	if err != nil {
		return nil, err.Error(), nil
	}
	w := o.PinnedWorld
	if w == 0 {
		w = len(cpus)
	}
	switch {
	case w > len(cpus):
		return nil, "", fmt.Errorf("collbench: --pinned-ranks %d: this process may use %d CPUs, and each rank needs its own", w, len(cpus))
	case w < 2:
		return nil, fmt.Sprintf("a ring of %d rank(s) (%d CPUs usable): nothing to balance", w, len(cpus)), nil
	}
	cpus = cpus[:w]
	total := w * o.TokensPerRank
	layouts := []collective.Layout{collective.Contiguous, collective.Zigzag}
	cfgs := make([]collective.RingAttnConfig, len(layouts))
	for i, l := range layouts {
		cfgs[i] = collective.RingAttnConfig{Total: total, Heads: o.Heads, HeadDim: o.HeadDim, Causal: true, Layout: l}
	}
	prev := kernels.MaxThreads()
	kernels.SetMaxThreads(1) // one kernel thread per rank: the rank's own
	defer kernels.SetMaxThreads(prev)
	fwds, bwds := stepTimes(cfgs, w, o.Iters)
	comms, data, closeRing := newRing(w, 7, o.TokensPerRank, o.Heads, o.HeadDim)
	defer closeRing()
	times := make([][]float64, len(cfgs))
	for it := -1; it < o.Iters; it++ { // the first round warms up
		for i, cfg := range cfgs {
			t0 := time.Now()
			if err := fwdBwd(ctx, comms, cfg, data, cpus); err != nil {
				return nil, "", err
			}
			if it >= 0 {
				times[i] = append(times[i], ms(time.Since(t0)))
			}
		}
	}
	rows := make([]PinnedRow, len(cfgs))
	for i, l := range layouts {
		rows[i] = PinnedRow{Layout: l.String(), World: w, Total: total, CPUs: cpus,
			WallMS: median(times[i]), WallMinMS: slices.Min(times[i]), WallMaxMS: slices.Max(times[i]),
			ModelMS: CriticalPath(fwds[i], false) + CriticalPath(bwds[i], true)}
	}
	for i := range rows {
		rows[i].Speedup = rows[0].WallMS / rows[i].WallMS
		rows[i].ModelSpeedup = rows[0].ModelMS / rows[i].ModelMS
	}
	return rows, "", nil
}

// memoryPerRank runs one causal zigzag forward+backward over world ranks
// at tokens rows per rank and reports the heap it took beyond the inputs
// and outputs: the peak of heap objects (sampled every 200µs, with the
// collector running often) divided by world.
func memoryPerRank(ctx context.Context, world, tokens, h, d int) (MemRow, error) {
	cfg := collective.RingAttnConfig{Total: world * tokens, Heads: h, HeadDim: d, Causal: true, Layout: collective.Zigzag}
	comms, data, closeRing := newRing(world, 6, tokens, h, d)
	defer closeRing()
	if err := fwdBwd(ctx, comms, cfg, data, nil); err != nil { // warm the kernels' pools
		return MemRow{}, err
	}
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	// The collector runs often (HeapPeak), so that the sampled peak is
	// (close to) the live heap: the ring's working buffers plus the
	// messages in flight, not the garbage of messages already consumed.
	var err error
	peak := kbench.HeapPeak(200*time.Microsecond, func() { err = fwdBwd(ctx, comms, cfg, data, nil) })
	if err != nil {
		return MemRow{}, err
	}
	return MemRow{World: world, TokensPerRank: tokens, PeakMiB: float64(peak-base) / float64(world) / (1 << 20)}, nil
}

// WriteRingAttnTable prints the result.
func WriteRingAttnTable(w io.Writer, res *RingAttnResult) {
	o := res.Options
	fmt.Fprintf(w, "# causal ring attention fwd+bwd, %d ranks × %d tokens, %d heads × %d, %d cores; critical path from per-step %s\n", o.World, o.TokensPerRank, o.Heads, o.HeadDim, res.Cores, res.Clock)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "layout\ttokens\tmodelled critical path(ms)\tmodelled speedup\timbalance\tshared-core wall(ms)\tper-rank compute(ms)\t")
	for _, r := range res.Layouts {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2f\t%.3f\t%.1f\t%.0f\t\n", r.Layout, r.Total, r.CriticalMS, r.Speedup, r.Imbalance, r.WallMS, r.RankMS)
	}
	tw.Flush()
	fmt.Fprintln(w)
	if len(res.Pinned) == 0 {
		fmt.Fprintf(w, "# measured, one rank per core: skipped (%s)\n", res.PinnedSkipped)
	} else {
		p0 := res.Pinned[0]
		fmt.Fprintf(w, "# measured, one rank per core: %d ranks × %d tokens, rank r pinned to CPU %v[r], median of %d runs interleaved; the model beside it\n", p0.World, p0.Total/p0.World, p0.CPUs, o.Iters)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "layout\ttokens\tmeasured wall(ms)\trange(ms)\tmeasured speedup\tmodelled critical path(ms)\tmodelled speedup\t")
		for _, r := range res.Pinned {
			fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f–%.1f\t%.2f\t%.1f\t%.2f\t\n", r.Layout, r.Total, r.WallMS, r.WallMinMS, r.WallMaxMS, r.Speedup, r.ModelMS, r.ModelSpeedup)
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "# heap per rank, zigzag causal fwd+bwd, fixed tokens per rank")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ranks\ttokens/rank\tpeak heap/rank(MiB)\t")
	for _, m := range res.Memory {
		fmt.Fprintf(tw, "%d\t%d\t%.2f\t\n", m.World, m.TokensPerRank, m.PeakMiB)
	}
	tw.Flush()
}
