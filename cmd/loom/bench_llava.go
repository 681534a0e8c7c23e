package main

import (
	"fmt"
	"os/exec"
	"text/tabwriter"

	"github.com/loomtrain/loom/trainer/hfbench"
	"github.com/spf13/cobra"
)

func init() { benchCmd.AddCommand(newBenchLlavaStepCmd()) }

func newBenchLlavaStepCmd() *cobra.Command {
	var (
		o      hfbench.LlavaStepOptions
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "llava-step",
		Short: "Time one LLaVA-1.5 training step against the same step in PyTorch, on the same weights and batch",
		Long: `Builds Loom's LLaVA-1.5 (frozen CLIP tower, mlp2x_gelu projector, LLaMA
decoder) at --size, exports it as a Hugging Face LlavaForConditionalGeneration
directory, and runs the same training step in PyTorch on it in a child
process (--python): the reference transcriptions of modeling_clip.py and
modeling_llama.py that models/hf's tests check Loom's forward against
(--ref, models/hf/testdata of the repository), in float32, with torch's
AdamW. The first forward's loss must agree within 1e-4 (relative), or the
bench stops: the two would not be the same model. Then the sides alternate
step by step (zero grads, forward, backward, AdamW); the best step of each
counts. The ratio is Loom's time over PyTorch's (target ≤ 0.8).

--stage pretrain trains the projector (LLaVA-1.5's first stage), finetune
the projector and the LLM (its second). The child runs as loom bench step's
does: every thread pool at --threads, OMP_WAIT_POLICY=PASSIVE, the BLAS it
loaded printed, the reference BLAS refused.

Example:
  loom bench llava-step --threads 1
  loom bench llava-step --stage pretrain --threads 2 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := exec.LookPath(o.Python); err != nil {
				return fmt.Errorf("--python %s: %v", o.Python, err)
			}
			r, err := hfbench.LlavaStep(cmd.Context(), o)
			if err != nil {
				return err
			}
			if asJSON {
				return kbenchWriteJSON(cmd.OutOrStdout(), r)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			p := r.Options
			fmt.Fprintf(tw, "LLaVA-1.5 %s step, size %s: %d rows × %d positions (%d params, %d trained), %d thread(s), gemm kernel %s\n",
				p.Stage, p.Size, p.Batch, r.Tokens, r.Params, r.Trainable, p.Threads, r.Kernel)
			fmt.Fprintf(tw, "pytorch %s runs on: %s, OMP_WAIT_POLICY=%s\n", r.TorchVersion, r.TorchBLAS, r.WaitPolicy)
			fmt.Fprintf(tw, "first loss: loom %.7f, pytorch %.7f (relative difference %.2g)\n", r.LoomLoss, r.TorchLoss, r.LossRelDiff)
			fmt.Fprintf(tw, "case\tseconds per step\tloss after\n")
			fmt.Fprintf(tw, "loom\t%.3f\t%.5f\n", r.LoomSeconds, r.LastLosses[0])
			fmt.Fprintf(tw, "pytorch\t%.3f\t%.5f\n", r.TorchSeconds, r.LastLosses[1])
			fmt.Fprintf(tw, "ratio loom/pytorch (time)\t%.2f\t(target ≤ 0.8)\n", r.Ratio)
			return tw.Flush()
		},
	}
	f := c.Flags()
	f.StringVar(&o.Size, "size", "small", "model preset: tiny or small")
	f.StringVar(&o.Stage, "stage", "finetune", "pretrain (the projector trains) or finetune (projector + LLM)")
	f.IntVar(&o.Batch, "batch", 8, "rows, one image each")
	f.IntVar(&o.Text, "text", 32, "text tokens per row after the image")
	f.IntVar(&o.Threads, "threads", 1, "Loom's goroutines per op and torch's threads (0 = GOMAXPROCS)")
	f.IntVar(&o.Steps, "steps", 6, "timed steps per side, alternating; the best counts")
	f.Float32Var(&o.LR, "lr", 2e-5, "AdamW learning rate")
	f.StringVar(&o.Python, "python", "/usr/bin/python3", "interpreter with torch")
	f.StringVar(&o.RefDir, "ref", "models/hf/testdata", "directory of the PyTorch reference transcriptions (gen_clip.py, gen_llava.py, st.py)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return c
}
