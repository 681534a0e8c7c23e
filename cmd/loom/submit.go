package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/coordinator"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

func init() { rootCmd.AddCommand(newSubmitCmd()) }

func newSubmitCmd() *cobra.Command {
	var (
		cf     clientFlags
		s3     s3Flags
		dryRun bool
	)
	c := &cobra.Command{
		Use:   "submit MANIFEST.yaml",
		Short: "Submit a training job from a manifest (or check it with --dry-run)",
		Long: `Reads a job manifest (YAML; see docs/manifest.md), checks it strictly — an unknown
field, a value of the wrong type or an invalid value is an error naming the line
and field — and submits it to the coordinator. The job waits until enough
workers are free, then runs its stages in order.

Before anything is sent, the manifest is also checked against its recipe as
the workers will run it: the model size, the stage names, the loss names, and
the trainable patterns against the stage's real parameter tree.

--dry-run only checks the manifest and prints its normalised form, with every
default written out, then what each stage will run with (the recipe's values
with the manifest's on top: lr, betas, eps, schedule, warmup, image size,
context, losses, and the trainable parameter count). With an init block it then lists what the first stage will
load, without loading it: every tensor of each source with its shape, dtype and
bytes and the parameters it initialises, and the parameters that stay at their
random init. It reads only headers and configs (Hugging Face sources through the
--s3-* settings when they are s3://); a source naming another job is resolved
through the coordinator, as a real submit does. Without an init block it does not
contact the coordinator.

The bearer token is read from LOOM_TOKEN.

Example:
  loom submit --dry-run blip2.yaml
  LOOM_TOKEN=secret loom submit --coordinator coord-0.coord:7001 blip2.yaml
  loom status blip2-small --watch`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			m, err := api.ParseManifest(args[0], data)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			// What the workers would refuse, refused now (sizes, stage
			// names, losses, trainable patterns against the real model).
			plans, err := trainer.CheckManifest(m)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if dryRun {
				b, err := m.Normalized()
				if err != nil {
					return err
				}
				if _, err = cmd.OutOrStdout().Write(b); err != nil {
					return err
				}
				printStagePlans(cmd.OutOrStdout(), plans)
				if len(m.Init) == 0 && m.Model.Tokenizer == "" {
					return nil
				}
				return planInit(cmd, &cf, &s3, m)
			}
			cc, err := cf.dial()
			if err != nil {
				return err
			}
			defer cc.Close()
			ctx, cancel := cf.ctx(cmd.Context())
			defer cancel()
			j, err := jobsClient(cc).SubmitJob(ctx, &loompb.SubmitJobRequest{ManifestYaml: data, File: args[0], RequestId: coordinator.NewID()})
			if err != nil {
				return rpcError(cf.addr, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "submitted job %s: %s %s, %d stages, %d steps (%s)\nwatch it with: loom status %s --watch\n",
				j.Name, m.Recipe, m.Model.Size, j.Stages, j.TotalSteps, j.State, j.Name)
			return nil
		},
	}
	cf.register(c)
	s3.register(c.Flags(), "S3 endpoint of init sources and checkpoints (with --dry-run)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "check the manifest and print its normalised form; submit nothing")
	return c
}

// planInit prints the tokenizer and what the manifest's init block loads
// (submit --dry-run).
func planInit(cmd *cobra.Command, cf *clientFlags, s3 *s3Flags, m *api.Manifest) error {
	ctx := cmd.Context()
	if jobs := m.InitJobs(); len(jobs) > 0 {
		cc, err := cf.dial()
		if err != nil {
			return err
		}
		defer cc.Close()
		for _, part := range sortedParts(m.Init) {
			src := m.Init[part]
			if src.Job == "" {
				continue
			}
			cctx, cancel := cf.ctx(ctx)
			j, err := jobsClient(cc).GetJob(cctx, &loompb.GetJobRequest{Job: src.Job})
			cancel()
			if err != nil {
				return fmt.Errorf("init.%s: %w", part, rpcError(cf.addr, err))
			}
			cp, err := pickCheckpoint(j, src.Step)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("init.%s: %w", part, err)}
			}
			rc := &api.ResolvedCheckpoint{Step: cp.Step, Stage: int(cp.Stage)}
			for _, o := range cp.Objects {
				rc.Objects = append(rc.Objects, api.CheckpointObject{Path: o.Path, SHA256: o.Sha256, Size: o.Size})
			}
			src.Checkpoint = rc
			m.Init[part] = src
		}
	}
	open := func(ctx context.Context, d api.Dataset) (shard.ObjectStore, string, error) {
		return s3.open(ctx, d.URI, false)
	}
	rep, err := trainer.PlanInit(ctx, trainer.Job{Manifest: m, OpenDataset: open})
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "\n# init: what the first stage loads (nothing was loaded)\n")
	if rep.Tokenizer != "" {
		fmt.Fprintf(w, "tokenizer: %s (%d tokens with Loom's special tokens)\n", rep.Tokenizer, rep.VocabSize)
	} else {
		fmt.Fprintf(w, "tokenizer: Loom's byte-level tokenizer (%d tokens)\n", rep.VocabSize)
	}
	for _, p := range rep.Parts {
		if p.Deferred != "" {
			fmt.Fprintf(w, "init.%s: %s: not in the first stage (%s); it initialises the stage where the part appears\n", p.Part, p.Source, p.Deferred)
			continue
		}
		fmt.Fprintf(w, "init.%s: %s (%s): %d tensors, %s\n", p.Part, p.Source, p.Layout, len(p.Tensors), humanBytes(p.Bytes))
		for _, t := range p.Tensors {
			fmt.Fprintf(w, "  %-60s %-16s %-4s %10d B -> %s\n", t.Name, fmt.Sprint(t.Shape), t.DType, t.Bytes, strings.Join(t.Loom, ", "))
		}
		for _, n := range p.Zeroed {
			fmt.Fprintf(w, "  (zero) %s\n", n)
		}
		for _, n := range p.Ignored {
			fmt.Fprintf(w, "  (ignored) %s\n", n)
		}
	}
	fmt.Fprintf(w, "random init (from seed %d): %d of the model's parameters\n", m.Seed, len(rep.RandomInit))
	for _, n := range rep.RandomInit {
		fmt.Fprintf(w, "  %s\n", n)
	}
	return nil
}

func sortedParts(m map[string]api.InitSource) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// printStagePlans writes what each stage will run with.
func printStagePlans(w io.Writer, plans []trainer.StagePlan) {
	fmt.Fprintf(w, "\n# effective per stage (the recipe's values, the manifest's on top)\n")
	for _, p := range plans {
		fmt.Fprintf(w, "%s (recipe stage %s): %d steps of %d, lr %g → %g %s, warmup %d, betas %g/%g, eps %g, weight decay %g\n",
			p.Name, p.RecipeStage, p.Steps, p.GlobalBatch, p.LR, p.MinLR, p.Schedule, p.Warmup, p.Beta1, p.Beta2, p.Eps, p.WeightDecay)
		fmt.Fprintf(w, "  image %d px, context %d tokens, label smoothing %.4g, losses %s\n", p.ImageSize, p.Context, p.LabelSmoothing, formatWeights(p.Losses))
		if p.LabelSmoothingNote != "" {
			fmt.Fprintf(w, "  note: %s\n", p.LabelSmoothingNote)
		}
		switch {
		case p.NotBuilt != "":
			fmt.Fprintf(w, "  parameters: %s\n", p.NotBuilt)
		case p.Params > 0:
			fmt.Fprintf(w, "  parameters: %d trainable of %d (%.1f%%)\n", p.Trainable, p.Params, 100*float64(p.Trainable)/float64(p.Params))
		}
	}
}

func formatWeights(ws map[string]float64) string {
	keys := make([]string, 0, len(ws))
	for k := range ws {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%g×%s", ws[k], k)
	}
	return strings.Join(parts, " + ")
}
