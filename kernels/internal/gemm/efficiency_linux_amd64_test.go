//go:build linux && amd64 && !noasm

package gemm

import (
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cpuTime is the process's CPU time: unlike the wall clock it does not advance
// while other processes hold the core, so best-of-N ratios survive a busy machine.
func cpuTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}

// BenchmarkMicroEfficiency reports each assembly micro-kernel's rate as a percentage
// of the FMA peak (BenchmarkPeak's loops), both timed by CPU time, interleaved, best
// of 30: "l1" with A and B in L1, "l2" with A cycling through 16 panels (192 KiB)
// and C written with a 4 KiB row stride and beta = 1.
func BenchmarkMicroEfficiency(b *testing.B) {
	type variant struct {
		name   string
		mr, nr int
		micro  microFunc
		peak   func(int)
		lanes  int
		chains int
	}
	var vs []variant
	if hasKernel("avx512") {
		vs = append(vs, variant{"avx512", 12, 32, microAVX512, peakAVX512, 16, 24})
	}
	if hasKernel("avx2") {
		vs = append(vs, variant{"avx2", 6, 16, microAVX2, peakAVX2, 8, 12})
	}
	const kc, calls, iters = 256, 100, 10000
	rng := rand.New(rand.NewPCG(4, 4))
	for _, v := range vs {
		b.Run(v.name, func(b *testing.B) {
			a := randSlice(rng, v.mr*kc*16)
			bp := randSlice(rng, kc*v.nr)
			c := make([]float32, v.mr*1024)
			var peak, l1, l2 time.Duration
			best := func(d *time.Duration, f func()) {
				t0 := cpuTime()
				f()
				if e := cpuTime() - t0; *d == 0 || e < *d {
					*d = e
				}
			}
			for b.Loop() {
				for r := 0; r < 30; r++ {
					best(&peak, func() { v.peak(iters) })
					best(&l1, func() {
						for i := 0; i < calls; i++ {
							v.micro(kc, &a[0], &bp[0], &c[0], v.nr, 1, 0)
						}
					})
					best(&l2, func() {
						for i := 0; i < calls; i++ {
							v.micro(kc, &a[(i%16)*v.mr*kc], &bp[0], &c[0], 1024, 1, 1)
						}
					})
				}
			}
			peakGF := float64(v.chains*v.lanes*2*iters) / peak.Seconds() / 1e9
			microFlops := float64(2 * v.mr * v.nr * kc * calls)
			b.ReportMetric(peakGF, "peak_GFLOP/s")
			b.ReportMetric(100*microFlops/l1.Seconds()/1e9/peakGF, "l1_%peak")
			b.ReportMetric(100*microFlops/l2.Seconds()/1e9/peakGF, "l2_%peak")
		})
	}
}
