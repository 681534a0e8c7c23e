package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"text/tabwriter"

	"github.com/loomtrain/loom/kernels/kbench"
	"github.com/spf13/cobra"
)

func init() {
	benchCmd.AddCommand(newBenchAttentionCmd(), newBenchStepCmd())
}

func newBenchAttentionCmd() *cobra.Command {
	var (
		cfg    kbench.AttnConfig
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "attention",
		Short: "Time blockwise (flash) attention forward+backward against sgemm, and its memory growth",
		Long: `Runs the kernels' blockwise attention (online softmax, backward recomputed
from the saved log-sum-exp) on random q, k, v of shape [seq, heads, head-dim],
forward then backward, several times, each followed by 1024³ sgemm calls on
the same threads for as long as the attention took (the best of each counts,
so both rates are sustained over windows of the same length).

It reports the attention FLOP rate (matrix products executed: forward
4·S²·D·H, backward 10·S²·D·H, halved with --causal), the sgemm rate and their
ratio (target ≥ 0.5), then the bytes one forward+backward allocates at each
--mem-seqs length: the peak live heap, inputs, outputs and gradients
included (sampled every 100 µs with the collector running often), the part
of it above those buffers (scratch), and the bytes allocated, the median of --mem-repeats sweeps, with the growth
exponent fitted over all lengths: linear growth (exponent ≈ 1) means no
S×S buffer.

Example:
  loom bench attention --seq 4096 --heads 4 --threads 1
  loom bench attention --causal --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := kbench.BenchAttention(cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return kbenchWriteJSON(cmd.OutOrStdout(), r)
			}
			return printAttn(cmd.OutOrStdout(), r)
		},
	}
	f := c.Flags()
	f.IntVar(&cfg.Seq, "seq", 4096, "sequence length (queries = keys)")
	f.IntVar(&cfg.Heads, "heads", 4, "attention heads")
	f.IntVar(&cfg.HeadDim, "head-dim", 64, "dimension of each head")
	f.BoolVar(&cfg.Causal, "causal", false, "causal mask (skips the tiles above the diagonal)")
	f.IntVar(&cfg.Threads, "threads", 1, "goroutines per op (0 = GOMAXPROCS)")
	f.IntVar(&cfg.Repeats, "repeats", 3, "runs of attention, each followed by sgemm; the best of each counts")
	f.IntSliceVar(&cfg.MemSeqs, "mem-seqs", []int{1024, 2048, 4096, 8192}, "sequence lengths of the memory-growth measurement (4 or more for a fitted exponent worth the name)")
	f.IntVar(&cfg.MemRepeats, "mem-repeats", 3, "sweeps of the memory measurement (medians per length, exponent fitted per sweep)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return c
}

func printAttn(w io.Writer, r kbench.AttnResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "attention seq %d, heads %d, head dim %d, causal %v, %d thread(s), gemm kernel %s\n", r.Seq, r.Heads, r.HeadDim, r.Causal, r.Threads, r.Kernel)
	fmt.Fprintf(tw, "case\tseconds\tGFLOP/s\n")
	fmt.Fprintf(tw, "forward\t%.3f\t%.1f\n", r.FwdSeconds, r.FwdGFLOPS)
	fmt.Fprintf(tw, "backward\t%.3f\t%.1f\n", r.BwdSeconds, r.BwdGFLOPS)
	fmt.Fprintf(tw, "forward+backward\t%.3f\t%.1f\n", r.FwdSeconds+r.BwdSeconds, r.GFLOPS)
	fmt.Fprintf(tw, "sgemm 1024³ (same run, same window)\t\t%.1f\n", r.SgemmGFLOPS)
	fmt.Fprintf(tw, "ratio attention/sgemm\t\t%.2f\t(target ≥ 0.5)\n", r.Ratio)
	if len(r.Memory) > 0 {
		fmt.Fprintf(tw, "\nmemory (median of %d sweeps)\n", r.MemRepeats)
		fmt.Fprintf(tw, "seq\tpeak live heap\tper token\tof it scratch\tallocated\tq+k+v\tdense S×S×H scores\n")
		for _, m := range r.Memory {
			fmt.Fprintf(tw, "%d\t%s\t%.0f B\t%s\t%s\t%s\t%s\n", m.Seq, kbenchMiB(m.PeakBytes), m.PerToken, kbenchMiB(m.ScratchBytes), kbenchMiB(m.AllocBytes), kbenchMiB(m.QKVBytes), kbenchMiB(m.DenseBytes))
		}
		fmt.Fprintf(tw, "growth exponent of the peak\t%.2f\t(least squares over %d lengths, median of %d sweeps, range %.2f–%.2f; 1 = linear, 2 = quadratic)\n",
			r.MemExponent, len(r.Memory), r.MemRepeats, r.MemExponentRange[0], r.MemExponentRange[1])
	}
	return tw.Flush()
}

func kbenchMiB(b uint64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }

func kbenchWriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newBenchStepCmd() *cobra.Command {
	var (
		cfg     kbench.StepConfig
		asJSON  bool
		noTorch bool
	)
	c := &cobra.Command{
		Use:   "step",
		Short: "Time one training step of a small transformer against the same model in PyTorch",
		Long: `Builds a GPT-style pre-norm transformer from the kernels ops (learned
positions, LayerNorm, causal blockwise attention, GELU MLP, untied LM head,
cross-entropy) and times one training step: zero grads, forward, backward,
AdamW. The same model runs in PyTorch in a child process (--python) that
steps on request, so the two alternate step by step and see the same
machine load; the best step of each counts. The ratio is Loom's time over
PyTorch's (target ≤ 1). Without a Python interpreter with torch, use
--no-torch.

The child runs as a PyTorch user would tune it: every thread pool (torch,
OpenMP, OpenBLAS, MKL) at the same --threads, OMP_WAIT_POLICY=PASSIVE so
that idle OpenMP threads sleep instead of spinning against OpenBLAS's (an
OMP_WAIT_POLICY in the environment wins), and
OPENBLAS_CORETYPE=SkylakeX where the CPU has AVX-512. It reports the BLAS
it loaded, which is printed; the reference BLAS (Debian's libblas3, slower
by an order of magnitude) is refused: install libopenblas0-pthread.

Example:
  loom bench step --threads 1
  loom bench step --layers 6 --dim 256 --seq 256 --batch 8 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if noTorch {
				cfg.Python = ""
			} else if _, err := exec.LookPath(cfg.Python); err != nil {
				return fmt.Errorf("--python %s: %v (use --no-torch to time Loom alone)", cfg.Python, err)
			}
			r, err := kbench.BenchStep(cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return kbenchWriteJSON(cmd.OutOrStdout(), r)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			c := r.Config
			fmt.Fprintf(tw, "training step: %d layers, dim %d, %d heads, seq %d, batch %d, vocab %d (%d params), %d thread(s), gemm kernel %s\n",
				c.Layers, c.Dim, c.Heads, c.Seq, c.Batch, c.Vocab, r.Params, c.Threads, r.Kernel)
			fmt.Fprintf(tw, "cpu: %s\n", r.CPU)
			if r.TorchBLAS != nil {
				fmt.Fprintf(tw, "pytorch runs on: %s, %d thread(s), OMP_WAIT_POLICY=%s\n", r.TorchBLAS, r.TorchThreads, r.WaitPolicy)
			}
			fmt.Fprintf(tw, "case\tseconds per step\n")
			fmt.Fprintf(tw, "loom\t%.3f\n", r.LoomSeconds)
			if r.TorchSeconds > 0 {
				fmt.Fprintf(tw, "pytorch %s (%d params)\t%.3f\n", r.TorchVersion, r.TorchParams, r.TorchSeconds)
				fmt.Fprintf(tw, "ratio loom/pytorch (time)\t%.2f\t(target ≤ 1)\n", r.Ratio)
			}
			return tw.Flush()
		},
	}
	f := c.Flags()
	f.IntVar(&cfg.Layers, "layers", 6, "transformer blocks")
	f.IntVar(&cfg.Dim, "dim", 256, "model width")
	f.IntVar(&cfg.Heads, "heads", 4, "attention heads")
	f.IntVar(&cfg.Seq, "seq", 256, "sequence length")
	f.IntVar(&cfg.Batch, "batch", 8, "sequences per step")
	f.IntVar(&cfg.Vocab, "vocab", 1024, "vocabulary size")
	f.IntVar(&cfg.Threads, "threads", 1, "goroutines per op and torch threads (0 = GOMAXPROCS)")
	f.IntVar(&cfg.Steps, "steps", 6, "timed steps per contender, alternating Loom and PyTorch step by step; the best counts")
	f.StringVar(&cfg.Python, "python", "/usr/bin/python3", "interpreter with torch for the baseline")
	f.BoolVar(&noTorch, "no-torch", false, "skip the PyTorch baseline")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return c
}
