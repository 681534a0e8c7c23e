package main

import (
	"fmt"
	"os/exec"
	"text/tabwriter"

	"github.com/loomtrain/loom/trainer/hfbench"
	"github.com/spf13/cobra"
)

func init() { benchCmd.AddCommand(newBenchBlip2StepCmd()) }

func newBenchBlip2StepCmd() *cobra.Command {
	var (
		o      hfbench.Blip2StepOptions
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "blip2-step",
		Short: "Time one BLIP-2 stage-1 training step (ITC, ITM, ITG) against the same step in PyTorch, on the same weights and batch",
		Long: `Builds Loom's BLIP-2 stage 1 (frozen ViT, ln_vision, Q-Former with ITC,
ITM and ITG, equally weighted) at --size, saves its parameters, and runs the
same training step in PyTorch on them in a child process (--python): LAVIS
blip2_qformer.py's equations written out in torch, float32, with torch's
AdamW (β 0.9, 0.98; weight decay 0.05 on weights, as the recipe). The batch's
last caption repeats its first, and one row has its second's image key (other
pixels, as two crops of one image), so ITC's soft targets and ITM's exclusion
of positives take part. The first forward uses the ITM hard negatives Loom drew,
and each of ITC, ITM, ITG must agree within 1e-4 (relative), or the bench
stops. Timed steps draw their own negatives on each side. The sides
alternate step by step (zero grads, forward, backward, AdamW); the best step
of each counts. The ratio is Loom's time over PyTorch's (target ≤ 0.8).

The child runs as loom bench step's does: every thread pool at --threads,
OMP_WAIT_POLICY=PASSIVE, the BLAS it loaded printed, the reference BLAS
refused.

Example:
  loom bench blip2-step --threads 1
  loom bench blip2-step --threads 2 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := exec.LookPath(o.Python); err != nil {
				return fmt.Errorf("--python %s: %v", o.Python, err)
			}
			r, err := hfbench.Blip2Step(cmd.Context(), o)
			if err != nil {
				return err
			}
			if asJSON {
				return kbenchWriteJSON(cmd.OutOrStdout(), r)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			p := r.Options
			fmt.Fprintf(tw, "BLIP-2 stage-1 step, size %s: %d rows, captions up to %d tokens (%d params, %d trained), %d thread(s), gemm kernel %s\n",
				p.Size, p.Batch, p.Text, r.Params, r.Trainable, p.Threads, r.Kernel)
			fmt.Fprintf(tw, "pytorch %s runs on: %s, OMP_WAIT_POLICY=%s\n", r.TorchVersion, r.TorchBLAS, r.WaitPolicy)
			fmt.Fprintf(tw, "first loss\tloom\tpytorch\trelative difference\n")
			for _, k := range hfbench.Blip2Terms {
				fmt.Fprintf(tw, "%s\t%.7f\t%.7f\t%.2g\n", k, r.LoomLosses[k], r.TorchLosses[k], r.RelDiff[k])
			}
			fmt.Fprintf(tw, "case\tseconds per step\tloss after\n")
			fmt.Fprintf(tw, "loom\t%.4f\t%.5f\n", r.LoomSeconds, r.LastLosses[0])
			fmt.Fprintf(tw, "pytorch\t%.4f\t%.5f\n", r.TorchSeconds, r.LastLosses[1])
			fmt.Fprintf(tw, "ratio loom/pytorch (time)\t%.2f\t(target ≤ 0.8)\n", r.Ratio)
			return tw.Flush()
		},
	}
	f := c.Flags()
	f.StringVar(&o.Size, "size", "small", "model preset: tiny or small")
	f.IntVar(&o.Batch, "batch", 8, "rows, one image and caption each (at least 4)")
	f.IntVar(&o.Text, "text", 24, "longest caption in tokens, [CLS] included; rows vary from half of it")
	f.IntVar(&o.Threads, "threads", 1, "Loom's goroutines per op and torch's threads (0 = GOMAXPROCS)")
	f.IntVar(&o.Steps, "steps", 6, "timed steps per side, alternating; the best counts")
	f.Float32Var(&o.LR, "lr", 1e-4, "AdamW learning rate")
	f.StringVar(&o.Python, "python", "/usr/bin/python3", "interpreter with torch")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return c
}
