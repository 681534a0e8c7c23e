package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/loomtrain/loom/kernels/internal/gemm"
)

var maxThreads atomic.Int64

// SetMaxThreads sets how many goroutines one op (and one GEMM) may use;
// n <= 0 restores the default, runtime.GOMAXPROCS(0).
func SetMaxThreads(n int) {
	if n < 0 {
		n = 0
	}
	maxThreads.Store(int64(n))
	gemm.SetMaxThreads(n)
}

// MaxThreads reports how many goroutines one op may use.
func MaxThreads() int {
	if n := maxThreads.Load(); n > 0 {
		return int(n)
	}
	return runtime.GOMAXPROCS(0)
}

// GemmKernel names the GEMM micro-kernel in use ("avx512", "avx2", "go").
func GemmKernel() string { return gemm.Kernel() }

// parallelFor runs body(worker, item) for item in [0, n) on up to
// MaxThreads() workers; items are handed out dynamically, worker is in
// [0, workers) and identifies per-worker scratch. It returns the worker count
// it used (call workersFor first to size scratch).
func parallelFor(n int, body func(worker, item int)) {
	w := workersFor(n)
	if w <= 1 {
		for i := 0; i < n; i++ {
			body(0, i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for wk := 0; wk < w; wk++ {
		wg.Add(1)
		go func(wk int) {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				body(wk, i)
			}
		}(wk)
	}
	wg.Wait()
}

// parallelForStatic is parallelFor with a fixed schedule: worker wk runs
// items wk, wk+w, wk+2w, … (w = workersFor(n)), so what a worker
// accumulates in its own scratch, and hence the order in which those
// partial sums are added afterwards, does not depend on timing: results are
// bit-reproducible run to run for a given thread count.
func parallelForStatic(n int, body func(worker, item int)) {
	w := workersFor(n)
	if w <= 1 {
		for i := 0; i < n; i++ {
			body(0, i)
		}
		return
	}
	var wg sync.WaitGroup
	for wk := 0; wk < w; wk++ {
		wg.Add(1)
		go func(wk int) {
			defer wg.Done()
			for i := wk; i < n; i += w {
				body(wk, i)
			}
		}(wk)
	}
	wg.Wait()
}

// workersFor is the number of workers parallelFor uses for n items.
func workersFor(n int) int { return max(1, min(n, MaxThreads())) }

// parallelChunks splits [0, n) into contiguous chunks of at least 16 Ki
// elements (multiples of 8, so vector kernels see whole lanes) and runs
// body on them in parallel.
func parallelChunks(n int, body func(lo, hi int)) {
	const grain = 16 << 10
	parts := min(MaxThreads(), (n+grain-1)/grain)
	if parts <= 1 {
		body(0, n)
		return
	}
	step := ((n+parts-1)/parts + 7) &^ 7
	parallelFor(parts, func(_, p int) {
		lo := p * step
		if lo < n {
			body(lo, min(n, lo+step))
		}
	})
}

// parallelRows splits rows of width n into contiguous ranges of at least
// 16 Ki elements and runs body on them in parallel.
func parallelRows(rows, n int, body func(r0, r1 int)) {
	const grain = 16 << 10
	parts := min(MaxThreads(), rows, max(1, rows*n/grain))
	if parts <= 1 {
		body(0, rows)
		return
	}
	parallelFor(parts, func(_, p int) { body(p*rows/parts, (p+1)*rows/parts) })
}
