package hfbench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/loomtrain/loom/shard"
)

// Options configure Run.
type Options struct {
	Bytes      int64 // checkpoint size in BF16 (default 2 GB)
	ShardBytes int64 // shard bound for the generated checkpoint and the export (default 500 MB)
	Repeat     int   // interleaved rounds of every pass (default 3)
	// Model overrides the shapes (zero: LlamaLike(Bytes)).
	Model Model
	// S3 is the store (bucket included); Prefix where the checkpoint is
	// generated (default "hfbench/ckpt").
	S3     shard.S3Config
	Prefix string
	// Spawn runs one pass, in a fresh process so that its peak RSS is its
	// own; nil runs the passes in this process (RunPass).
	Spawn func(ctx context.Context, sp PassSpec) (*PassResult, error)
	// Passes are the kinds to run each round (default all five); a
	// comparison or memory row whose passes did not run is left out.
	Passes []string
	// Log, when set, gets a line per pass.
	Log io.Writer
}

// Stats are min, median and max.
type Stats struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

func stats(xs []float64) Stats {
	ys := slices.Clone(xs)
	slices.Sort(ys)
	n := len(ys)
	med := ys[n/2]
	if n%2 == 0 {
		med = (ys[n/2-1] + ys[n/2]) / 2
	}
	return Stats{ys[0], med, ys[n-1]}
}

// Comparison is a measured case against its baseline, round by round.
type Comparison struct {
	Case     string  `json:"case"`
	Baseline string  `json:"baseline"`
	MBps     Stats   `json:"mb_per_s"`          // the case, 1e6 bytes/s of checkpoint bytes
	BaseMBps Stats   `json:"baseline_mb_per_s"` // the baseline
	Ratios   Stats   `json:"ratios"`            // case/baseline within each round
	Ratio    float64 `json:"ratio_of_medians"`
	Target   float64 `json:"target,omitempty"` // minimum ratio, 0: none
	Met      bool    `json:"met"`
}

// Memory is one pass kind's peak against the bound.
type Memory struct {
	Case     string `json:"case"`
	RSSPeak  int64  `json:"rss_peak"`  // highest VmHWM over the rounds
	HeapPeak int64  `json:"heap_peak"` // highest sampled Go heap
	Bound    int64  `json:"bound"`     // model (float32) + largest shard
	Met      bool   `json:"met"`       // RSSPeak <= Bound
}

// Result is what Run measured.
type Result struct {
	Date            string                  `json:"date"`
	Model           Model                   `json:"model"`
	Params          int64                   `json:"params"`
	ModelBytes      int64                   `json:"model_bytes"` // float32 parameters
	CheckpointBytes int64                   `json:"checkpoint_bytes"`
	Shards          int                     `json:"shards"`
	LargestShard    int64                   `json:"largest_shard"`
	Fetchers        int                     `json:"fetchers"`
	Generate        *PassResult             `json:"generate"`
	Passes          map[string][]PassResult `json:"passes"`
	Compare         []Comparison            `json:"compare"`
	Memory          []Memory                `json:"memory"`
	InProcess       bool                    `json:"in_process"` // passes shared this process (RSS polluted)
}

// Run generates the checkpoint, then runs Repeat rounds of raw-get,
// load, load-into, raw-put and export (the order reversed every other
// round, so that drift in the machine's load favours neither side).
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Bytes <= 0 {
		o.Bytes = 2_000_000_000
	}
	if o.ShardBytes <= 0 {
		o.ShardBytes = 500_000_000
	}
	if o.Repeat <= 0 {
		o.Repeat = 3
	}
	if o.Prefix == "" {
		o.Prefix = "hfbench/ckpt"
	}
	run := o.Spawn
	if run == nil {
		run = RunPass
	}
	m := o.Model
	if m.Layers == 0 {
		m = LlamaLike(o.Bytes)
	}
	spec := func(kind, out string) PassSpec {
		return PassSpec{Kind: kind, S3: o.S3, Prefix: o.Prefix, Out: out, Model: m, ShardBytes: o.ShardBytes}
	}
	res := &Result{Date: time.Now().UTC().Format("2006-01-02"), Model: m, Params: m.Numel(), ModelBytes: 4 * m.Numel(),
		Fetchers: Fetchers, Passes: map[string][]PassResult{}, InProcess: o.Spawn == nil}
	logf := func(format string, a ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format, a...)
		}
	}
	g, err := run(ctx, spec(Generate, ""))
	if err != nil {
		return nil, err
	}
	res.Generate, res.CheckpointBytes, res.Shards, res.LargestShard = g, g.Bytes, g.Shards, g.LargestShard
	logf("generated %d params, %d bytes in %d shards (largest %d) in %.1fs\n", res.Params, g.Bytes, g.Shards, g.LargestShard, g.Seconds)
	order := []string{RawGet, Load, LoadInto, RawPut, Export}
	if len(o.Passes) > 0 {
		order = slices.DeleteFunc(order, func(k string) bool { return !slices.Contains(o.Passes, k) })
		if len(order) != len(o.Passes) {
			return nil, fmt.Errorf("passes %v: want some of %s, %s, %s, %s, %s", o.Passes, RawGet, Load, LoadInto, RawPut, Export)
		}
	}
	for r := 0; r < o.Repeat; r++ {
		ks := slices.Clone(order)
		if r%2 == 1 {
			slices.Reverse(ks)
		}
		for _, k := range ks {
			out := ""
			switch k {
			case RawPut:
				out = "hfbench/raw-put"
			case Export:
				out = "hfbench/export"
			}
			pr, err := run(ctx, spec(k, out))
			if err != nil {
				return nil, fmt.Errorf("round %d: %w", r+1, err)
			}
			res.Passes[k] = append(res.Passes[k], *pr)
			logf("round %d %-9s %6.2fs %7.1f MB/s cpu %5.2fs rss peak %5.0f MiB heap peak %5.0f MiB\n",
				r+1, k, pr.Seconds, mbps(*pr), pr.CPUSeconds, mib(pr.RSSPeak), mib(pr.HeapPeak))
		}
	}
	cmp := func(c, base string, target float64) Comparison {
		var a, b, rs []float64
		for i := range res.Passes[c] {
			x, y := mbps(res.Passes[c][i]), mbps(res.Passes[base][i])
			a, b, rs = append(a, x), append(b, y), append(rs, x/y)
		}
		out := Comparison{Case: c, Baseline: base, MBps: stats(a), BaseMBps: stats(b), Ratios: stats(rs), Target: target}
		out.Ratio = out.MBps.Median / out.BaseMBps.Median
		out.Met = target == 0 || out.Ratio >= target
		return out
	}
	for _, c := range []struct {
		c, base string
		target  float64
	}{{Load, RawGet, 0.8}, {LoadInto, RawGet, 0.8}, {Export, RawPut, 0}} {
		if len(res.Passes[c.c]) > 0 && len(res.Passes[c.base]) > 0 {
			res.Compare = append(res.Compare, cmp(c.c, c.base, c.target))
		}
	}
	bound := res.ModelBytes + res.LargestShard
	for _, k := range []string{Load, LoadInto, Export, RawGet, RawPut} {
		if len(res.Passes[k]) == 0 {
			continue
		}
		mm := Memory{Case: k, Bound: bound}
		for _, p := range res.Passes[k] {
			mm.RSSPeak, mm.HeapPeak = max(mm.RSSPeak, p.RSSPeak), max(mm.HeapPeak, p.HeapPeak)
		}
		mm.Met = mm.RSSPeak <= bound
		res.Memory = append(res.Memory, mm)
	}
	return res, nil
}

func mbps(p PassResult) float64 { return float64(p.Bytes) / p.Seconds / 1e6 }

func mib(b int64) float64 { return float64(b) / (1 << 20) }
