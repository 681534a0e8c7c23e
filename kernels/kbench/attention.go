package kbench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loomtrain/loom/kernels"
)

// AttnConfig configures BenchAttention.
type AttnConfig struct {
	Seq, Heads, HeadDim int
	Causal              bool
	Threads             int // goroutines per op; 0 = GOMAXPROCS
	Repeats             int // interleaved runs; the best counts
	// MemSeqs are the sequence lengths of the memory-growth measurement
	// (at least 2; 4 or more for an exponent worth the name).
	MemSeqs []int
	// MemRepeats is how many times the whole memory sweep runs (default
	// 3); each point is the median, and the exponent is fitted per sweep.
	MemRepeats int
}

// AttnResult is the outcome of BenchAttention. FLOPs count the matrix
// products executed: forward 4·S²·D·H, backward 10·S²·D·H (it recomputes
// q·kᵀ), halved when causal.
type AttnResult struct {
	Seq        int     `json:"seq"`
	Heads      int     `json:"heads"`
	HeadDim    int     `json:"head_dim"`
	Causal     bool    `json:"causal"`
	Threads    int     `json:"threads"`
	Kernel     string  `json:"gemm_kernel"`
	FwdSeconds float64 `json:"fwd_seconds"`
	BwdSeconds float64 `json:"bwd_seconds"`
	FwdGFLOPS  float64 `json:"fwd_gflops"`
	BwdGFLOPS  float64 `json:"bwd_gflops"`
	GFLOPS     float64 `json:"gflops"` // forward + backward
	// SgemmGFLOPS is sgemm at 1024³ with the same threads, in the same run:
	// back-to-back calls for as long as one attention forward+backward
	// takes, so both rates are sustained over windows of the same length.
	SgemmGFLOPS float64 `json:"sgemm_gflops"`
	Ratio       float64 `json:"ratio_to_sgemm"`
	// Memory: the peak live heap of one forward+backward at each length,
	// with and beyond its inputs, outputs and gradients (and the bytes it
	// allocated), the median of MemRepeats sweeps.
	Memory []AttnMem `json:"memory"`
	// MemExponent is the slope of log(peak) against log(seq), fitted by
	// least squares over every length of a sweep: the median over the
	// sweeps, with their range. 1 is linear growth, 2 quadratic.
	MemExponent      float64    `json:"memory_growth_exponent"`
	MemExponentRange [2]float64 `json:"memory_growth_exponent_range"`
	MemRepeats       int        `json:"memory_repeats"`
}

// AttnMem is one point of the memory-growth measurement.
type AttnMem struct {
	Seq int `json:"seq"`
	// PeakBytes is the highest live heap (heap objects, sampled every
	// 100 µs with the collector running at GOGC=5) of one call, its
	// inputs, outputs and gradients included; ScratchBytes the part of it
	// above those buffers.
	PeakBytes    uint64  `json:"peak_heap_bytes"`
	ScratchBytes uint64  `json:"scratch_heap_bytes"`
	AllocBytes   uint64  `json:"alloc_bytes"` // allocated in total by the call
	QKVBytes     uint64  `json:"qkv_bytes"`   // q, k and v together, for scale
	DenseBytes   uint64  `json:"dense_bytes"` // the S×S×H score matrix a dense implementation holds
	PerToken     float64 `json:"peak_bytes_per_token"`
}

type attnBufs struct {
	q, k, v, do, o, lse, delta, dq, dk, dv []float32
}

func newAttnBufs(s, h, d int) *attnBufs {
	rng := rand.New(rand.NewPCG(1, uint64(s)))
	r := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		return x
	}
	n := s * h * d
	return &attnBufs{r(n), r(n), r(n), r(n), make([]float32, n), make([]float32, s*h), make([]float32, s*h),
		make([]float32, n), make([]float32, n), make([]float32, n)}
}

func (b *attnBufs) run(s, h, d int, m *kernels.AttnMask) (fwd, bwd time.Duration) {
	scale := float32(1 / math.Sqrt(float64(d)))
	t0 := time.Now()
	kernels.AttnBlockForward(b.q, b.k, b.v, s, s, h, d, scale, m, b.o, b.lse)
	t1 := time.Now()
	kernels.AttnDelta(b.o, b.do, s, h, d, b.delta)
	kernels.AttnBlockBackward(b.q, b.k, b.v, b.do, b.lse, b.delta, s, s, h, d, scale, m, b.dq, b.dk, b.dv)
	return t1.Sub(t0), time.Since(t1)
}

func causalMask(s int) *kernels.AttnMask {
	p := make([]int32, s)
	for i := range p {
		p[i] = int32(i)
	}
	return &kernels.AttnMask{Causal: true, QPos: p, KPos: p}
}

// SgemmGFLOPS times one n³ sgemm through the kernels' GEMM (best of reps).
func SgemmGFLOPS(n, reps int) float64 {
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i], b[i] = float32(i%7)-3, float32(i%5)-2
	}
	best := math.Inf(1)
	for r := 0; r < reps; r++ {
		t0 := time.Now()
		kernels.Sgemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n)
		best = math.Min(best, time.Since(t0).Seconds())
	}
	return 2 * float64(n) * float64(n) * float64(n) / best / 1e9
}

// SustainedSgemmGFLOPS runs n³ sgemm back to back for at least window (and
// at least twice) and returns the rate over the whole run.
func SustainedSgemmGFLOPS(n int, window time.Duration) float64 {
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i], b[i] = float32(i%7)-3, float32(i%5)-2
	}
	calls := 0
	t0 := time.Now()
	for calls < 2 || time.Since(t0) < window {
		kernels.Sgemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n)
		calls++
	}
	return 2 * float64(n) * float64(n) * float64(n) * float64(calls) / time.Since(t0).Seconds() / 1e9
}

// attnMemory runs one forward+backward at length s on fresh buffers and
// returns its peak live heap (buffers included: above the heap before they
// were allocated), the part of it above the buffers (the call's scratch),
// and the bytes the call allocated. A first call warms the code; two
// collections then empty the kernels' scratch pools, so the measured call
// allocates its scratch anew.
func attnMemory(s, h, d int, causal bool) (peak, scratch, alloc uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	runtime.GC() // twice: sync.Pool's victim caches outlive one collection
	runtime.GC()
	metrics.Read(sample)
	base0 := sample[0].Value.Uint64()
	var m *kernels.AttnMask
	if causal {
		m = causalMask(s)
	}
	b := newAttnBufs(s, h, d)
	b.run(s, h, d, m)
	runtime.GC()
	runtime.GC()
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	metrics.Read(sample)
	base = min(base, sample[0].Value.Uint64())
	top := HeapPeak(100*time.Microsecond, func() { b.run(s, h, d, m) })
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(b)
	return top - min(base0, top), top - min(base, top), after.TotalAlloc - before.TotalAlloc
}

// HeapPeak runs run with the collector at GOGC=5 (so that the live heap
// is not hidden by garbage) and returns the highest heap-objects size
// (runtime/metrics) sampled every interval while it ran, at least the
// size at its start.
func HeapPeak(interval time.Duration, run func()) uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	var hi atomic.Uint64
	hi.Store(s[0].Value.Uint64())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				metrics.Read(s)
				if v := s[0].Value.Uint64(); v > hi.Load() {
					hi.Store(v)
				}
			}
		}
	})
	gc := debug.SetGCPercent(5)
	run()
	close(stop)
	wg.Wait()
	debug.SetGCPercent(gc)
	return hi.Load()
}

// slope is the least-squares slope of ys against xs.
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx, sy, sxx, sxy = sx+xs[i], sy+ys[i], sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

func medianU(x []uint64) uint64 {
	y := slices.Clone(x)
	slices.Sort(y)
	return y[len(y)/2]
}

// BenchAttention measures blockwise attention forward+backward against
// sgemm, interleaved, and the memory growth with sequence length.
func BenchAttention(cfg AttnConfig) (AttnResult, error) {
	if cfg.Seq <= 0 || cfg.Heads <= 0 || cfg.HeadDim <= 0 {
		return AttnResult{}, fmt.Errorf("kbench: attention: seq %d, heads %d and head dim %d must be positive", cfg.Seq, cfg.Heads, cfg.HeadDim)
	}
	if cfg.Repeats <= 0 {
		cfg.Repeats = 3
	}
	kernels.SetMaxThreads(cfg.Threads)
	defer kernels.SetMaxThreads(0)
	s, h, d := cfg.Seq, cfg.Heads, cfg.HeadDim
	var m *kernels.AttnMask
	if cfg.Causal {
		m = causalMask(s)
	}
	bufs := newAttnBufs(s, h, d)
	bufs.run(min(s, 256), h, d, nil) // warm up
	res := AttnResult{Seq: s, Heads: h, HeadDim: d, Causal: cfg.Causal, Threads: kernels.MaxThreads(), Kernel: kernels.GemmKernel()}
	res.FwdSeconds, res.BwdSeconds = math.Inf(1), math.Inf(1)
	for r := 0; r < cfg.Repeats; r++ {
		f, b := bufs.run(s, h, d, m)
		res.FwdSeconds = math.Min(res.FwdSeconds, f.Seconds())
		res.BwdSeconds = math.Min(res.BwdSeconds, b.Seconds())
		res.SgemmGFLOPS = math.Max(res.SgemmGFLOPS, SustainedSgemmGFLOPS(1024, f+b))
	}
	work := float64(s) * float64(s) * float64(d) * float64(h)
	if cfg.Causal {
		work /= 2
	}
	res.FwdGFLOPS = 4 * work / res.FwdSeconds / 1e9
	res.BwdGFLOPS = 10 * work / res.BwdSeconds / 1e9
	res.GFLOPS = 14 * work / (res.FwdSeconds + res.BwdSeconds) / 1e9
	res.Ratio = res.GFLOPS / res.SgemmGFLOPS

	if cfg.MemRepeats <= 0 {
		cfg.MemRepeats = 3
	}
	if len(cfg.MemSeqs) > 0 {
		res.MemRepeats = cfg.MemRepeats
		peaks := make([][]uint64, len(cfg.MemSeqs)) // [length][sweep]
		allocs := make([][]uint64, len(cfg.MemSeqs))
		scratches := make([][]uint64, len(cfg.MemSeqs))
		var exps []float64
		for range cfg.MemRepeats {
			var xs, ys []float64
			for i, ms := range cfg.MemSeqs {
				peak, scratch, alloc := attnMemory(ms, h, d, cfg.Causal)
				peaks[i], scratches[i], allocs[i] = append(peaks[i], peak), append(scratches[i], scratch), append(allocs[i], alloc)
				xs, ys = append(xs, math.Log(float64(ms))), append(ys, math.Log(float64(max(peak, 1))))
			}
			if len(xs) >= 2 {
				exps = append(exps, slope(xs, ys))
			}
		}
		for i, ms := range cfg.MemSeqs {
			p := medianU(peaks[i])
			res.Memory = append(res.Memory, AttnMem{Seq: ms, PeakBytes: p, ScratchBytes: medianU(scratches[i]), AllocBytes: medianU(allocs[i]), QKVBytes: uint64(3 * ms * h * d * 4),
				DenseBytes: uint64(ms) * uint64(ms) * uint64(h) * 4, PerToken: float64(p) / float64(ms)})
		}
		if len(exps) > 0 {
			sort.Float64s(exps)
			res.MemExponent = exps[len(exps)/2]
			res.MemExponentRange = [2]float64{exps[0], exps[len(exps)-1]}
		}
	}
	return res, nil
}
