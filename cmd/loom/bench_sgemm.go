package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/kernels/kbench"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// sgemmModelShapes are the float32 GEMMs (m×n×k) that dominate the models: a
// square reference, a ViT-B/16 projection over one image's 196 patches, the
// MLP up and down projections of a 1024-token batch with d=768, an attention
// projection, and a small-d model's MLP.
var sgemmModelShapes = []sgemmShape{
	{M: 1024, N: 1024, K: 1024},
	{M: 196, N: 768, K: 768},
	{M: 1024, N: 768, K: 768},
	{M: 1024, N: 3072, K: 768},
	{M: 1024, N: 768, K: 3072},
	{M: 256, N: 256, K: 1024},
}

// sgemmShape is one C[m×n] = op(A)·op(B) problem. TransA multiplies by Aᵀ with
// A stored k×m (a weight gradient's dYᵀ·X); TransB by Bᵀ with B stored n×k (a
// linear layer's x·Wᵀ).
type sgemmShape struct {
	M, N, K        int
	TransA, TransB bool
}

func (s sgemmShape) String() string {
	t := []byte("NN")
	if s.TransA {
		t[0] = 'T'
	}
	if s.TransB {
		t[1] = 'T'
	}
	return fmt.Sprintf("%dx%dx%d %s", s.M, s.N, s.K, t)
}

func (s sgemmShape) flops() float64 { return 2 * float64(s.M) * float64(s.N) * float64(s.K) }

// sgemmResult is one row of `loom bench sgemm`: the best rate each side reached
// over the interleaved rounds.
type sgemmResult struct {
	Shape          string   `json:"shape"`
	M              int      `json:"m"`
	N              int      `json:"n"`
	K              int      `json:"k"`
	TransA         bool     `json:"trans_a"`
	TransB         bool     `json:"trans_b"`
	Threads        int      `json:"threads"`
	Kernel         string   `json:"kernel"`
	GFLOPS         float64  `json:"gflops"`
	Seconds        float64  `json:"seconds"`
	BaselineGFLOPS *float64 `json:"baseline_gflops"` // null when no baseline ran
	Ratio          *float64 `json:"ratio"`           // gflops / baseline_gflops
	Baseline       string   `json:"baseline"`        // what the baseline was, or why it is unavailable
	Clock          string   `json:"clock"`           // "wall" or "cpu" (process CPU time)
	CPU            string   `json:"cpu"`             // the machine's CPU (kbench.CPUModel)
}

type sgemmBenchOpts struct {
	shapes   []sgemmShape
	threads  int
	rounds   int
	budget   time.Duration // per side per round
	baseline bool
	python   string
	coreType string
	cpuClock bool // time calls by process CPU time instead of wall time
}

func newBenchSgemmCmd() *cobra.Command {
	var (
		n, m, k    int
		threads    int
		shapes     string
		trans      string
		rounds     int
		budget     time.Duration
		baseline   bool
		python     string
		coreType   string
		clock      string
		asJSON     bool
		shapeFlags = []string{"m", "n", "k"}
	)
	c := &cobra.Command{
		Use:   "sgemm",
		Short: "Float32 matrix-multiply GFLOP/s of Loom's CPU kernels, side by side with OpenBLAS",
		Long: `Measures C = A·B (float32, row-major) through Loom's CPU matmul and, in the same
run, the same products through numpy on Debian's OpenBLAS, and prints the GFLOP/s
of both and their ratio (> 1 means Loom is faster).

The two sides run interleaved for --rounds rounds of about --budget each (at least
3 calls a side a round) and the best call of each side is kept, because build
machines are shared and noisy. Both sides allocate the product on every call, as
numpy's a @ b does. With --clock cpu (single thread only) each call is timed by
the process's CPU time instead of wall time, so that time the core spent running
other processes is not counted: use it on an overloaded machine.

The baseline runs in a child process: --python (default /usr/bin/python3) with
numpy, with OPENBLAS_NUM_THREADS set to --threads and OPENBLAS_CORETYPE set to
--openblas-coretype (Debian's OpenBLAS 0.3.21 mis-detects recent Xeons as
"Prescott" and runs ~5x slower without it). When numpy is missing or is not
linked to OpenBLAS (Debian: apt-get install python3-numpy libopenblas0-pthread),
the baseline columns say "unavailable" and the reason is printed; nothing is
estimated.

Shapes: --n alone is a square problem; --m/--n/--k give any shape; --shapes model
runs the models' real shapes (1024³, 196×768×768, 1024×768×768, 1024×3072×768,
1024×768×3072, 256×256×1024). --trans picks op(A)·op(B): nn, nt (A·Bᵀ, a linear
layer's forward), tn (Aᵀ·B, its weight gradient) or tt.

Example:
  loom bench sgemm --n 1024 --threads 1
  loom bench sgemm --n 1024 --threads 1 --json
  loom bench sgemm --shapes model --threads 1
  loom bench sgemm --m 196 --n 768 --k 768 --trans nt --threads 2
  loom bench sgemm --shapes model --threads 1 --clock cpu --rounds 20 --budget 50ms`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			set := func(name string) bool { return cmd.Flags().Changed(name) }
			transA, transB, err := parseTrans(trans)
			if err != nil {
				return err
			}
			var list []sgemmShape
			switch shapes {
			case "":
				sq := n
				if !set("m") && !set("k") {
					list = []sgemmShape{{M: sq, N: sq, K: sq, TransA: transA, TransB: transB}}
				} else {
					for _, f := range shapeFlags {
						if !set(f) {
							return fmt.Errorf("--%s is missing: give all of --m, --n and --k, or --n alone for a square problem", f)
						}
					}
					list = []sgemmShape{{M: m, N: n, K: k, TransA: transA, TransB: transB}}
				}
			case "model":
				for _, f := range shapeFlags {
					if set(f) {
						return fmt.Errorf("--shapes model and --%s exclude each other", f)
					}
				}
				for _, s := range sgemmModelShapes {
					s.TransA, s.TransB = transA, transB
					list = append(list, s)
				}
			default:
				return fmt.Errorf("--shapes %q: want model (or leave it out and give --n, or --m/--n/--k)", shapes)
			}
			for _, s := range list {
				if s.M <= 0 || s.N <= 0 || s.K <= 0 {
					return fmt.Errorf("shape %s: every dimension must be positive", s)
				}
			}
			if threads < 0 {
				return fmt.Errorf("--threads %d: want 0 (all cores) or more", threads)
			}
			if rounds < 1 {
				return fmt.Errorf("--rounds %d: want at least 1", rounds)
			}
			switch clock {
			case "wall":
			case "cpu":
				if threads != 1 {
					return fmt.Errorf("--clock cpu needs --threads 1: with more threads, CPU time sums the threads (and counts OpenBLAS's spin-waiting)")
				}
			default:
				return fmt.Errorf("--clock %q: want wall or cpu", clock)
			}
			opts := sgemmBenchOpts{shapes: list, threads: threads, rounds: rounds, budget: budget,
				baseline: baseline, python: python, coreType: coreType, cpuClock: clock == "cpu"}
			res, err := runSgemmBench(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if len(res) == 1 {
					return enc.Encode(res[0])
				}
				return enc.Encode(map[string]any{"results": res})
			}
			return writeSgemmTable(cmd.OutOrStdout(), res)
		},
	}
	f := c.Flags()
	f.IntVar(&n, "n", 1024, "columns of C (alone: the size of a square problem)")
	f.IntVar(&m, "m", 0, "rows of C and of A")
	f.IntVar(&k, "k", 0, "the inner dimension")
	f.IntVar(&threads, "threads", 1, "threads for both Loom and OpenBLAS; 0 means all cores")
	f.StringVar(&shapes, "shapes", "", `"model" runs the models' real shapes`)
	f.StringVar(&trans, "trans", "nn", "nn (A·B), nt (A·Bᵀ, B stored n×k), tn (Aᵀ·B, A stored k×m) or tt")
	f.IntVar(&rounds, "rounds", 5, "interleaved rounds per shape; the best of each side is kept")
	f.DurationVar(&budget, "budget", 300*time.Millisecond, "time each side spends per shape per round")
	f.BoolVar(&baseline, "baseline", true, "run OpenBLAS (numpy) side by side")
	f.StringVar(&python, "python", "/usr/bin/python3", "the Python with numpy that runs the baseline")
	f.StringVar(&coreType, "openblas-coretype", kbench.DefaultCoreType(), "OPENBLAS_CORETYPE for the baseline (default SkylakeX where the CPU has AVX-512F; empty: let OpenBLAS detect)")
	f.StringVar(&clock, "clock", "wall", "wall, or cpu (process CPU time; --threads 1 only)")
	f.BoolVar(&asJSON, "json", false, "print JSON: one object for one shape, {\"results\": [...]} for several")
	return c
}

func init() { benchCmd.AddCommand(newBenchSgemmCmd()) }

func parseTrans(s string) (transA, transB bool, err error) {
	switch strings.ToLower(s) {
	case "nn":
		return false, false, nil
	case "nt":
		return false, true, nil
	case "tn":
		return true, false, nil
	case "tt":
		return true, true, nil
	}
	return false, false, fmt.Errorf("--trans %q: want nn, nt, tn or tt", s)
}

// runSgemmBench measures every shape, interleaving Loom and the baseline.
func runSgemmBench(ctx context.Context, o sgemmBenchOpts) ([]sgemmResult, error) {
	threads := o.threads
	if threads == 0 {
		kernels.SetMaxThreads(0)
		threads = kernels.MaxThreads()
	}
	kernels.SetMaxThreads(threads)
	defer kernels.SetMaxThreads(0)

	var base *openblasHarness
	baseNote := "not run (--baseline=false)"
	if o.baseline {
		h, err := startOpenBLAS(ctx, o.python, threads, o.coreType, o.cpuClock)
		if err != nil {
			baseNote = "unavailable: " + err.Error()
			slog.Warn("sgemm baseline unavailable", "err", err)
		} else {
			base = h
			baseNote = h.name
			defer h.close()
		}
	}

	var out []sgemmResult
	for _, s := range o.shapes {
		l := newLoomSgemm(s, o.cpuClock)
		best, bestBase := time.Duration(0), time.Duration(0)
		for r := 0; r < o.rounds; r++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if d := l.best(o.budget); best == 0 || d < best {
				best = d
			}
			if base != nil {
				d, err := base.best(s, o.budget)
				if err != nil {
					return nil, fmt.Errorf("openblas baseline, shape %s: %w", s, err)
				}
				if bestBase == 0 || d < bestBase {
					bestBase = d
				}
			}
		}
		res := sgemmResult{Shape: s.String(), M: s.M, N: s.N, K: s.K, TransA: s.TransA, TransB: s.TransB, Threads: threads,
			Kernel: kernels.GemmKernel(), Seconds: best.Seconds(), GFLOPS: s.flops() / best.Seconds() / 1e9,
			Baseline: baseNote, Clock: "wall", CPU: kbench.CPUModel()}
		if o.cpuClock {
			res.Clock = "cpu"
		}
		if base != nil {
			g := s.flops() / bestBase.Seconds() / 1e9
			ratio := res.GFLOPS / g
			res.BaselineGFLOPS, res.Ratio = &g, &ratio
		}
		slog.Debug("sgemm", "shape", res.Shape, "gflops", res.GFLOPS, "baseline", res.BaselineGFLOPS)
		out = append(out, res)
	}
	return out, nil
}

// loomSgemm holds one shape's operands for Loom's matmul.
type loomSgemm struct {
	s     sgemmShape
	a, b  *kernels.Tensor
	clock func() time.Duration
}

// wallClock and cpuClock are the two ways to time a call.
func wallClock() time.Duration { return time.Duration(time.Now().UnixNano()) }

func cpuClock() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		panic(fmt.Sprintf("clock_gettime(CLOCK_PROCESS_CPUTIME_ID): %v", err))
	}
	return time.Duration(ts.Nano())
}

func newLoomSgemm(s sgemmShape, cpu bool) *loomSgemm {
	rng := rand.New(rand.NewPCG(uint64(s.M), uint64(s.N*s.K)))
	fill := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		return x
	}
	l := &loomSgemm{s: s, a: kernels.New(fill(s.M*s.K), s.M, s.K), clock: wallClock}
	if cpu {
		l.clock = cpuClock
	}
	if s.TransA {
		l.a = kernels.New(l.a.Data, s.K, s.M)
	}
	if s.TransB {
		l.b = kernels.New(fill(s.N*s.K), s.N, s.K)
	} else {
		l.b = kernels.New(fill(s.K*s.N), s.K, s.N)
	}
	var tp *kernels.Tape // nil: inference, records nothing
	tp.MatmulT(l.a, l.b, s.TransA, s.TransB)
	return l
}

// best runs the product for about budget (at least 3 calls) and returns the
// fastest call.
func (l *loomSgemm) best(budget time.Duration) time.Duration {
	var tp *kernels.Tape
	var best time.Duration
	start := time.Now()
	for calls := 0; calls < 3 || time.Since(start) < budget; calls++ {
		t0 := l.clock()
		tp.MatmulT(l.a, l.b, l.s.TransA, l.s.TransB)
		if d := l.clock() - t0; best == 0 || d < best {
			best = d
		}
	}
	return best
}

// openblasScript serves timing requests over stdin/stdout: one JSON line per
// request {"m","n","k","trans_a","trans_b","budget"} answered by {"seconds"} (the fastest
// call) or {"error"}. argv[1] == "cpu" times calls by process CPU time. Its first line says which BLAS numpy really loaded.
const openblasScript = `
import ctypes, json, sys, time
try:
    import numpy as np
except Exception as e:
    print(json.dumps({"error": "numpy: %s" % e}), flush=True); sys.exit(0)
x = np.ones((64, 64), dtype=np.float32); x @ x
blas = loom_blas()  # noqa: F821 (kbench.BLASProbe, prepended)
if "openblas" not in blas:
    print(json.dumps({"error": "numpy %s is not linked to OpenBLAS but to %s (Debian: apt-get install libopenblas0-pthread)" % (np.__version__, blas["libs"]), "blas": blas}), flush=True); sys.exit(0)
print(json.dumps({"ready": True, "numpy": np.__version__, "blas": blas}), flush=True)
clock = time.process_time if sys.argv[1:] == ["cpu"] else time.perf_counter
cache = {}
for line in sys.stdin:
    r = json.loads(line)
    key = (r["m"], r["n"], r["k"], r["trans_a"], r["trans_b"])
    if key not in cache:
        g = np.random.default_rng(0)
        a = g.standard_normal((r["k"], r["m"]) if r["trans_a"] else (r["m"], r["k"]), dtype=np.float32)
        b = g.standard_normal((r["n"], r["k"]) if r["trans_b"] else (r["k"], r["n"]), dtype=np.float32)
        cache = {key: (a.T if r["trans_a"] else a, b.T if r["trans_b"] else b)}
        cache[key][0] @ cache[key][1]
    a, b = cache[key]
    best, calls, end = float("inf"), 0, time.perf_counter() + r["budget"]
    while calls < 3 or time.perf_counter() < end:
        t0 = clock(); a @ b; best = min(best, clock() - t0); calls += 1
    print(json.dumps({"seconds": best}), flush=True)
`

// openblasHarness is a running baseline child process.
type openblasHarness struct {
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
}

func startOpenBLAS(ctx context.Context, python string, threads int, coreType string, cpu bool) (*openblasHarness, error) {
	clock := "wall"
	if cpu {
		clock = "cpu"
	}
	cmd := exec.CommandContext(ctx, python, "-c", kbench.BLASProbe+openblasScript, clock)
	cmd.Env = kbench.BaselineEnv(threads, coreType)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", python, err)
	}
	h := &openblasHarness{cmd: cmd, in: in, out: bufio.NewScanner(stdout)}
	var hello struct {
		Ready bool            `json:"ready"`
		Error string          `json:"error"`
		Numpy string          `json:"numpy"`
		BLAS  kbench.BLASInfo `json:"blas"`
	}
	if err := h.read(&hello); err != nil {
		h.close()
		return nil, err
	}
	if !hello.Ready {
		h.close()
		return nil, errors.New(hello.Error)
	}
	b, err := kbench.BaselineBLAS("numpy "+hello.Numpy+" ("+python+")", hello.BLAS)
	if err != nil {
		h.close()
		return nil, err
	}
	if b.Threads != threads {
		h.close()
		return nil, fmt.Errorf("OpenBLAS under numpy runs %d threads, not the %d asked for", b.Threads, threads)
	}
	h.name = fmt.Sprintf("%s via numpy %s", b, hello.Numpy)
	return h, nil
}

func (h *openblasHarness) read(v any) error {
	if !h.out.Scan() {
		if err := h.out.Err(); err != nil {
			return err
		}
		return errors.New("baseline process exited")
	}
	return json.Unmarshal(h.out.Bytes(), v)
}

// best asks the child for the fastest call of shape s over about budget.
func (h *openblasHarness) best(s sgemmShape, budget time.Duration) (time.Duration, error) {
	req, _ := json.Marshal(map[string]any{"m": s.M, "n": s.N, "k": s.K, "trans_a": s.TransA, "trans_b": s.TransB, "budget": budget.Seconds()})
	if _, err := h.in.Write(append(req, '\n')); err != nil {
		return 0, err
	}
	var resp struct {
		Seconds float64 `json:"seconds"`
	}
	if err := h.read(&resp); err != nil {
		return 0, err
	}
	if resp.Seconds <= 0 {
		return 0, fmt.Errorf("baseline answered %q", h.out.Text())
	}
	return time.Duration(resp.Seconds * float64(time.Second)), nil
}

func (h *openblasHarness) close() {
	h.in.Close()
	_ = h.cmd.Wait()
}

func writeSgemmTable(w io.Writer, res []sgemmResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "shape\tthreads\tkernel\tloom GFLOP/s\tbaseline GFLOP/s\tratio\t")
	for _, r := range res {
		bg, ratio := "unavailable", "-"
		if r.BaselineGFLOPS != nil {
			bg, ratio = fmt.Sprintf("%.1f", *r.BaselineGFLOPS), fmt.Sprintf("%.2f", *r.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.1f\t%s\t%s\t\n", r.Shape, r.Threads, r.Kernel, r.GFLOPS, bg, ratio)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(res) > 0 {
		_, err := fmt.Fprintf(w, "baseline: %s; clock: %s; cpu: %s\n", res[0].Baseline, res[0].Clock, res[0].CPU)
		return err
	}
	return nil
}
