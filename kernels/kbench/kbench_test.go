package kbench

import (
	"errors"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loomtrain/loom/kernels"
)

func TestBenchAttentionSmall(t *testing.T) {
	r, err := BenchAttention(AttnConfig{Seq: 256, Heads: 1, HeadDim: 16, Causal: true, Repeats: 1, MemSeqs: []int{512, 1024, 2048, 4096}, MemRepeats: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !(r.GFLOPS > 0) || !(r.SgemmGFLOPS > 0) || len(r.Memory) != 4 || r.MemRepeats != 2 {
		t.Fatalf("BenchAttention: implausible result %+v", r)
	}
	// The peak holds at least q, k and v (and o, dO and the gradients), so
	// it is above them and grows with the length; blockwise attention
	// holds no S×S buffer, so it is far below the dense scores at 4096.
	for _, m := range r.Memory {
		if m.PeakBytes < m.QKVBytes || m.ScratchBytes >= m.PeakBytes {
			t.Errorf("seq %d: peak %d B, scratch %d B, q+k+v %d B", m.Seq, m.PeakBytes, m.ScratchBytes, m.QKVBytes)
		}
	}
	if last := r.Memory[3]; last.PeakBytes > last.DenseBytes/4 {
		t.Errorf("seq 4096: peak %d B, dense scores %d B: an S×S buffer?", last.PeakBytes, last.DenseBytes)
	}
	if r.MemExponent < 0.8 || r.MemExponent > 1.3 || r.MemExponentRange[0] > r.MemExponent || r.MemExponentRange[1] < r.MemExponent {
		t.Errorf("memory growth exponent %.2f (range %v), want about 1", r.MemExponent, r.MemExponentRange)
	}
	if got := slope([]float64{0, 1, 2, 3}, []float64{1, 3, 5, 7}); math.Abs(got-2) > 1e-12 {
		t.Errorf("slope of y = 2x + 1: %v", got)
	}
	if _, err := BenchAttention(AttnConfig{Seq: 0, Heads: 1, HeadDim: 8}); err == nil {
		t.Error("BenchAttention(seq 0): no error")
	}
}

// TestStepModelLearns checks that the benchmark model is a working model:
// a few AdamW steps on a fixed batch lower the loss.
func TestStepModelLearns(t *testing.T) {
	cfg := StepConfig{Layers: 2, Dim: 32, Heads: 2, Seq: 16, Batch: 2, Vocab: 50}
	m := NewStepModel(cfg)
	opt := kernels.NewAdamW(m.Params, kernels.AdamWConfig{LR: 3e-3})
	ids, tgt := make([]int32, 32), make([]int32, 32)
	for i := range ids {
		ids[i], tgt[i] = int32(i*7%50), int32(i*3%50)
	}
	var first, last float32
	for s := 0; s < 15; s++ {
		for _, p := range m.Params {
			p.ZeroGrad()
		}
		tp := kernels.NewTape()
		loss := m.Loss(tp, ids, tgt)
		tp.Backward(loss)
		opt.Step()
		if s == 0 {
			first = loss.Item()
		}
		last = loss.Item()
	}
	if !(last < first-0.5) || math.IsNaN(float64(last)) {
		t.Fatalf("step model loss %g -> %g after 15 steps, want a clear decrease", first, last)
	}
	if math.Abs(float64(first)-math.Log(50)) > 0.3 {
		t.Errorf("initial loss %g, want about ln(50) = %.2f for a freshly initialised model", first, math.Log(50))
	}
}

func TestBenchStepNoTorch(t *testing.T) {
	r, err := BenchStep(StepConfig{Layers: 1, Dim: 16, Heads: 2, Seq: 8, Batch: 1, Vocab: 20, Steps: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.LoomSeconds <= 0 || r.Params == 0 || r.TorchSeconds != 0 {
		t.Fatalf("BenchStep without Python: %+v", r)
	}
	if _, err := BenchStep(StepConfig{Layers: 1, Dim: 10, Heads: 3, Seq: 8, Batch: 1, Vocab: 20}); err == nil {
		t.Error("BenchStep(dim 10, heads 3): no error")
	}
}

// TestBenchStepTorch runs the PyTorch side on a tiny model when Debian's
// torch is installed (CI does not need it: the test skips).
func TestBenchStepTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Python process")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		t.Skipf("no /usr/bin/python3 with torch: %v", err)
	}
	cfg := StepConfig{Layers: 1, Dim: 16, Heads: 2, Seq: 8, Batch: 2, Vocab: 20, Steps: 2, Threads: 1, Python: "/usr/bin/python3"}
	r, err := BenchStep(cfg)
	// Debian's torch uses libblas.so.3, whichever BLAS the alternatives
	// system points it at: the reference one must be refused, by name.
	ref := false
	if lib, lerr := filepath.EvalSymlinks("/usr/lib/x86_64-linux-gnu/libblas.so.3"); lerr == nil {
		ref = strings.Contains(lib, "/blas/")
	}
	var refErr *ReferenceBLASError
	if ref {
		if !errors.As(err, &refErr) || !strings.Contains(err.Error(), "/blas/libblas.so") {
			t.Fatalf("with the reference BLAS as libblas.so.3, BenchStep = %v, want a ReferenceBLASError naming it", err)
		}
		t.Skipf("refused as it should be: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if r.TorchBLAS == nil || r.TorchBLAS.Kind == "" || r.TorchThreads != 1 || r.CPU == "" {
		t.Errorf("BenchStep does not say what PyTorch ran on: blas %+v, threads %d, cpu %q", r.TorchBLAS, r.TorchThreads, r.CPU)
	}
	if r.TorchParams != r.Params {
		t.Errorf("PyTorch model has %d parameters, Loom's %d: not the same model", r.TorchParams, r.Params)
	}
	if !(r.TorchSeconds > 0) || !(r.Ratio > 0) {
		t.Errorf("BenchStep with PyTorch: %+v", r)
	}
}

func TestBaselineBLAS(t *testing.T) {
	const ref = "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0"
	const ob = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"
	for _, c := range []struct {
		name    string
		info    BLASInfo
		kind    string
		refused bool
	}{
		{"reference", BLASInfo{Libs: []string{ref, "/usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3.11.0", "/usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0"}}, "other", true},
		{"openblas as libblas", BLASInfo{Libs: []string{ob, "/usr/lib/x86_64-linux-gnu/libgomp.so.1"}, OpenBLAS: ob, Config: "OpenBLAS 0.3.21", Core: "SkylakeX", Threads: 1}, "openblas", false},
		{"openblas found but silent", BLASInfo{Libs: []string{"/opt/lib/libopenblasp-r0.3.21.so"}}, "openblas", false},
		{"mkl beside a libblas", BLASInfo{Libs: []string{"/opt/intel/lib/libmkl_rt.so.2", ref}}, "mkl", false},
		{"blis", BLASInfo{Libs: []string{"/usr/lib/x86_64-linux-gnu/blis-openmp/libblas.so.3", "/usr/lib/x86_64-linux-gnu/libblis.so.4"}}, "blis", false},
		{"static (pip wheel)", BLASInfo{Libs: []string{"/usr/lib/libgomp.so.1"}}, "other", false},
	} {
		b, err := BaselineBLAS("test", c.info)
		var refErr *ReferenceBLASError
		if refused := errors.As(err, &refErr); refused != c.refused || b.Kind != c.kind {
			t.Errorf("%s: kind %q, err %v; want kind %q, refused %v", c.name, b.Kind, err, c.kind, c.refused)
		}
		if c.refused && refErr.Lib != ref {
			t.Errorf("%s: refusal names %q, want %q", c.name, refErr.Lib, ref)
		}
	}
	for _, e := range BaselineEnv(2, "") {
		if e == "OMP_WAIT_POLICY=PASSIVE" {
			return
		}
	}
	t.Error("BaselineEnv does not make OpenMP's idle threads sleep")
}

// BenchmarkStep times one training step of the default `loom bench step`
// model at one thread (profile with -cpuprofile).
func BenchmarkStep(b *testing.B) {
	kernels.SetMaxThreads(1)
	defer kernels.SetMaxThreads(0)
	cfg := StepConfig{Layers: 6, Dim: 256, Heads: 4, Seq: 256, Batch: 8, Vocab: 1024}
	m := NewStepModel(cfg)
	opt := kernels.NewAdamW(m.Params, kernels.AdamWConfig{LR: 1e-4, WeightDecay: 0.1})
	ids, tgt := make([]int32, cfg.Batch*cfg.Seq), make([]int32, cfg.Batch*cfg.Seq)
	for i := range ids {
		ids[i], tgt[i] = int32(i*7%cfg.Vocab), int32(i*3%cfg.Vocab)
	}
	for b.Loop() {
		for _, p := range m.Params {
			p.ZeroGrad()
		}
		tp := kernels.NewTape()
		tp.Backward(m.Loss(tp, ids, tgt))
		opt.Step()
	}
}
