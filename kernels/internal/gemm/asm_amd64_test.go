//go:build amd64 && !noasm

package gemm

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAsmVzeroupper checks statically that every assembly function executes
// VZEROUPPER right before each RET: with dirty upper ZMM/YMM state, Go's legacy-SSE
// scalar code after the call runs up to 100× slower (no timing is asserted here;
// BenchmarkScalarAfterKernel measures the effect).
func TestAsmVzeroupper(t *testing.T) {
	files, err := filepath.Glob("*_amd64.s")
	if err != nil || len(files) == 0 {
		t.Fatalf("no assembly files found (%v)", err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fn, prev, rets := "", "", 0
		for i, line := range strings.Split(string(src), "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "TEXT ") {
				fn = line
			}
			if line == "RET" {
				rets++
				if prev != "VZEROUPPER" {
					t.Errorf("%s:%d: RET in %q follows %q, want VZEROUPPER", f, i+1, fn, prev)
				}
			}
			if line != "" && !strings.HasPrefix(line, "//") {
				prev = line
			}
		}
		if rets == 0 {
			t.Errorf("%s: no RET found", f)
		}
	}
}

var sinkExp float64

// BenchmarkScalarAfterKernel times scalar math.Exp right after each assembly
// routine; compare with the "clean" case. Without VZEROUPPER the exp loop ran
// ~100× slower on the build machine (research/kernels.md, hazard 1).
func BenchmarkScalarAfterKernel(b *testing.B) {
	const kc = 64
	a := make([]float32, 12*kc)
	bp := make([]float32, kc*32)
	c := make([]float32, 12*32)
	expLoop := func() {
		s := 0.0
		for i := 0; i < 1000; i++ {
			s += math.Exp(float64(i) * 1e-3)
		}
		sinkExp = s
	}
	cases := map[string]func(){
		"clean":  func() {},
		"avx512": func() { microAVX512(kc, &a[0], &bp[0], &c[0], 32, 1, 0) },
		"avx2":   func() { microAVX2(kc, &a[0], &bp[0], &c[0], 16, 1, 0) },
	}
	for _, name := range []string{"clean", "avx512", "avx2"} {
		if name == "avx512" && !hasKernel("avx512") || name == "avx2" && !hasKernel("avx2") {
			continue
		}
		call := cases[name]
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				call()
				expLoop()
			}
		})
	}
}

func hasKernel(name string) bool {
	for _, k := range available() {
		if k.name == name {
			return true
		}
	}
	return false
}

// BenchmarkPeak measures the float32 FMA peak of one core from register-only loops;
// BenchmarkMicro's GFLOP/s divided by this is the micro-kernel's efficiency.
func BenchmarkPeak(b *testing.B) {
	const iters = 1000
	if hasKernel("avx512") {
		b.Run("avx512", func(b *testing.B) {
			for b.Loop() {
				peakAVX512(iters)
			}
			b.ReportMetric(24*16*2*iters*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
	if hasKernel("avx2") {
		b.Run("avx2", func(b *testing.B) {
			for b.Loop() {
				peakAVX2(iters)
			}
			b.ReportMetric(12*8*2*iters*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// TestGeneratedAsmUpToDate regenerates the assembly into a temporary directory and
// checks that the committed *_amd64.s files are exactly what gen_kernels.go writes.
func TestGeneratedAsmUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the generator")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to run the generator: %v", err)
	}
	dir := t.TempDir()
	if out, err := exec.Command(goBin, "run", "gen_kernels.go", "-o", dir).CombinedOutput(); err != nil {
		t.Fatalf("go run gen_kernels.go -o %s: %v\n%s", dir, err, out)
	}
	gen, _ := filepath.Glob(filepath.Join(dir, "*.s"))
	committed, _ := filepath.Glob("*_amd64.s")
	if len(gen) != len(committed) {
		t.Errorf("generator writes %d .s files, the package has %d: run go generate", len(gen), len(committed))
	}
	for _, g := range gen {
		want, _ := os.ReadFile(g)
		got, err := os.ReadFile(filepath.Base(g))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s differs from gen_kernels.go's output (err %v): run go generate ./kernels/internal/gemm/", filepath.Base(g), err)
		}
	}
}
