package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/internal/devcluster"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

func init() { rootCmd.AddCommand(newDevCmd()) }

type devFlags struct {
	recipe, size   string
	workers        int
	steps          int64
	firstSteps     int64
	batch, samples int
	lr             float64
	evalN          int
	seed           int64
	dataDir        string
	keep           bool
	pretrain       int64  // steps of the text-pretraining job (0: none)
	vqgan          int64  // steps of the VQGAN job LWM's image tokenizer starts from (0: none)
	blip2          int64  // steps of the BLIP-2 stage-1 job InstructBLIP's Q-Former starts from (0: none)
	manifest       string // the user's manifest, trained instead of the recipe's
	data           string // a local dataset to ingest and train on
	keepRunning    bool
	evalSet        bool // --eval-samples given
}

func newDevCmd() *cobra.Command {
	var f devFlags
	c := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole system on this machine and train a recipe end to end",
		Long: `Starts everything Loom needs on one machine and trains a recipe end to end:
a real etcd and an S3 server inside this process, a coordinator and --workers
worker processes (this same binary as 'loom coordinator' and 'loom worker'),
a synthetic dataset (pictures of coloured shapes with captions that describe
them, interleaved documents, short frame sequences, text) written as Arrow
shards into that S3, and the recipe's job: --first-steps steps in the first
stage, --steps in each later one. Progress bars show each stage's loss and
throughput (plain log lines when stdout is not a terminal). At the end it
evaluates held-out image-text retrieval and caption loss with the committed
checkpoints and prints whether the model learned.

Each recipe has its own defaults for --size, --first-steps and --steps,
chosen to show learning in a few minutes on 2 cores; the flags you give win:

` + devDefaultsTable() + `
Everything lives under --data-dir (a temporary directory by default, removed
at exit unless --keep): the S3 objects (data and checkpoints), etcd, the
coordinator's Raft log and every process's log in logs/. Run again on a kept
--data-dir, it follows or resumes the job it left there, reuses a job the
recipe starts from that succeeded, and trains the recipe's job again as
NAME-2 (NAME-3, ...).

Your own data and manifest:
  --data PATH      ingests PATH (an image folder with a caption JSONL, LLaVA
                   JSON, WebDataset tars, or text: see 'loom data ingest')
                   into the embedded S3 as s3://loom/datasets/data, and trains
                   the recipe on it in place of the synthetic data of its kind
  --manifest FILE  trains FILE instead of the recipe's job (no text
                   pretraining); its datasets may name s3://loom/datasets/data
                   (--data) and the synthetic s3://loom/datasets/KIND
                   (image-text, interleaved, video-text, text, tokens,
                   conversation), which are generated for it
With either, the held-out evaluation on synthetic pairs runs only when
--eval-samples is given.

--keep-running keeps the cluster up after the jobs, printing the
'export LOOM_COORDINATOR=...' line (and the S3 settings) for loom status,
submit, logs and export from another shell; Ctrl-C stops it.

Ctrl-C stops it all: the workers drain (checkpoint, then exit), then the
coordinator, S3 and etcd; nothing keeps running.

Example:
  loom dev                                  # BLIP-2 at the small size, 2 workers, ~4 minutes
  loom dev --seed 2                         # the same with another initialisation and data order
  loom dev --recipe vila                    # VILA's 3 stages at the tiny size, ~1 minute
  loom dev --recipe llava                   # LLaVA-1.5: projector on pairs, then projector + LLM on conversations + text
  loom dev --recipe instructblip            # a BLIP-2 representation job first, then InstructBLIP from its Q-Former
  loom dev --recipe lwm --steps 20          # LWM's 8 stages, 20 steps each
  loom dev --size tiny --first-steps 30 --steps 10 --data-dir /tmp/loom-dev --keep
  loom dev --data ~/coco-subset --keep-running     # your image folder + captions.jsonl
  loom dev --manifest my-job.yaml --workers 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			f.evalSet = cmd.Flags().Changed("eval-samples")
			rf, err := resolveDevFlags(f, cmd.Flags().Changed)
			if err != nil {
				return err
			}
			return runDev(ctx, rf, cmd.OutOrStdout())
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.recipe, "recipe", "blip2", "recipe to train: "+strings.Join(api.Recipes, ", "))
	fl.StringVar(&f.size, "size", "", "model size: tiny or small (default: the recipe's, see above)")
	fl.IntVar(&f.workers, "workers", 2, "worker processes (the job runs on all of them)")
	fl.Int64Var(&f.steps, "steps", 0, "optimizer steps of every stage after the first (default: the recipe's, see above)")
	fl.Int64Var(&f.firstSteps, "first-steps", 0, "optimizer steps of the first stage, 0: --steps (default: the recipe's, see above)")
	fl.IntVar(&f.batch, "batch", 16, "global batch (samples per step, all workers together)")
	fl.IntVar(&f.samples, "samples", 1024, "synthetic samples per data kind")
	fl.Float64Var(&f.lr, "lr", 5e-3, "peak learning rate of every stage (a short run needs a high one)")
	fl.IntVar(&f.evalN, "eval-samples", 48, "held-out image-text pairs for the retrieval check (N² forward passes per evaluation; 0: skip it)")
	fl.Int64Var(&f.seed, "seed", 1, "the job's seed (model initialisation, data order, augmentation)")
	fl.StringVar(&f.dataDir, "data-dir", "", "where data, checkpoints, state and logs go (default: a temporary directory)")
	fl.BoolVar(&f.keep, "keep", false, "keep --data-dir at exit")
	fl.Int64Var(&f.vqgan, "vqgan-steps", 0, "LWM: steps of the VQGAN job whose VQGAN tokenises LWM's images; 0 draws it from the seed (default: the recipe's, see above)")
	fl.StringVar(&f.manifest, "manifest", "", "train this manifest instead of the recipe's job (see above)")
	fl.StringVar(&f.data, "data", "", "ingest this local dataset into the embedded S3 and train on it (see above)")
	fl.BoolVar(&f.keepRunning, "keep-running", false, "keep the cluster up after the jobs, until Ctrl-C")
	fl.Int64Var(&f.blip2, "blip2-steps", 0, "InstructBLIP: steps of the BLIP-2 representation-stage job whose Q-Former and ViT it starts from; 0 starts them from the seed (default: the recipe's, see above)")
	fl.Int64Var(&f.pretrain, "pretrain-steps", 0, "steps of the text-pretraining job whose LLM the recipe starts from; 0 starts the LLM from random weights (default: the recipe's, see above)")
	return c
}

// devDefault is what loom dev trains a recipe with when --size,
// --first-steps and --steps are not given: enough to show learning, and to
// finish in a few minutes on 2 cores.
type devDefault struct {
	size              string
	firstSteps, steps int64 // firstSteps 0: the first stage takes steps too
	// pretrain is the steps of the text-pretraining job run first, whose
	// LLM the recipe's job starts from (init: llm: {job: ...}); 0 for LWM,
	// whose own first stages train its LLM on text.
	pretrain int64
	// vqgan is the steps of the VQGAN job LWM's image tokenizer starts
	// from (init: vqgan: {job: ...}).
	vqgan int64
	// blip2 is the steps of the BLIP-2 representation-stage job whose
	// Q-Former and ViT InstructBLIP starts from (init: qformer, vision).
	blip2 int64
}

// devDefaults per recipe. BLIP-2 stage 1 (ITC + ITM + ITG) is what shows
// learning, and needs the small size and most of the steps (docs/worker.md
// "Defaults of loom dev"); the other recipes have 1 (InstructBLIP), 2
// (LLaVA), 3 (Qwen-VL, VILA) or 8 (LWM) stages, each trained at the tiny
// size with the same number of steps.
var devDefaults = map[string]devDefault{
	"blip2":        {size: "small", firstSteps: 450, steps: 150, pretrain: 300},
	"instructblip": {size: "tiny", steps: 150, pretrain: 300, blip2: 150},
	"qwen-vl":      {size: "tiny", steps: 150, pretrain: 300},
	"llava":        {size: "tiny", steps: 150, pretrain: 300},
	"vila":         {size: "tiny", steps: 150, pretrain: 300},
	"lwm":          {size: "tiny", steps: 80, vqgan: 150},
	"vqgan":        {size: "tiny", steps: 300},
}

// devDefaultsTable is devDefaults as the help text shows it, in
// api.Recipes order.
func devDefaultsTable() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %-12s %-6s %-47s %-13s %-18s %s\n", "recipe", "size", "first jobs", "first stage", "each later stage", "stages")
	for _, name := range api.Recipes {
		d := devDefaults[name]
		first := d.firstSteps
		if first == 0 {
			first = d.steps
		}
		stages := "?"
		if r, err := trainer.Lookup(name); err == nil {
			stages = fmt.Sprint(len(r.Stages))
		}
		var pres []string
		if d.pretrain > 0 {
			pres = append(pres, fmt.Sprintf("LLM text, %d steps", d.pretrain))
		}
		if d.vqgan > 0 {
			pres = append(pres, fmt.Sprintf("VQGAN, %d steps", d.vqgan))
		}
		if d.blip2 > 0 {
			pres = append(pres, fmt.Sprintf("BLIP-2 stage 1, %d steps", d.blip2))
		}
		pre := "-"
		if len(pres) > 0 {
			pre = strings.Join(pres, "; ")
		}
		fmt.Fprintf(&b, "  %-12s %-6s %-47s %3d steps     %3d steps          %s\n", name, d.size, pre, first, d.steps, stages)
	}
	return b.String()
}

// resolveDevFlags fills in the recipe's defaults (devDefaults) for the
// flags among --size, --first-steps and --steps that set does not report
// as given on the command line; given flags win.
func resolveDevFlags(f devFlags, set func(flag string) bool) (devFlags, error) {
	d, ok := devDefaults[f.recipe]
	if !ok {
		return f, fmt.Errorf("--recipe %q: want one of %s", f.recipe, strings.Join(api.Recipes, ", "))
	}
	if !set("size") {
		f.size = d.size
	}
	if !set("first-steps") {
		f.firstSteps = d.firstSteps
	}
	if !set("steps") {
		f.steps = d.steps
	}
	if !set("pretrain-steps") {
		f.pretrain = d.pretrain
	}
	if !set("vqgan-steps") {
		f.vqgan = d.vqgan
	}
	if !set("blip2-steps") {
		f.blip2 = d.blip2
	}
	if f.blip2 < 0 {
		return f, fmt.Errorf("--blip2-steps %d: want 0 (Q-Former and ViT from the seed) or more", f.blip2)
	}
	if f.blip2 > 0 && f.recipe != "instructblip" {
		return f, fmt.Errorf("--blip2-steps: only InstructBLIP starts from a BLIP-2 job")
	}
	if f.vqgan < 0 {
		return f, fmt.Errorf("--vqgan-steps %d: want 0 (a VQGAN drawn from the seed) or more", f.vqgan)
	}
	if f.vqgan > 0 && f.recipe != "lwm" {
		return f, fmt.Errorf("--vqgan-steps: only LWM tokenises images with a VQGAN")
	}
	if f.pretrain < 0 {
		return f, fmt.Errorf("--pretrain-steps %d: want 0 (no pretraining) or more", f.pretrain)
	}
	if f.steps < 1 {
		return f, fmt.Errorf("--steps %d: want at least 1", f.steps)
	}
	if f.firstSteps < 0 {
		return f, fmt.Errorf("--first-steps %d: want 0 (the same as --steps) or more", f.firstSteps)
	}
	return f, nil
}

// devManifest is the job loom dev submits.
func devManifest(f devFlags, uri func(shard.Kind) string) (*api.Manifest, error) {
	m, err := trainer.ExampleManifest(f.recipe, f.size, uri, f.steps, f.batch)
	if err != nil {
		return nil, err
	}
	// The jobs the example's init block names are the dev plan's
	// (PreJob), run first; without them the parts start from the seed.
	m.Init = nil
	if f.firstSteps > 0 {
		m.Stages[0].Steps = f.firstSteps
	}
	m.Elastic = api.Elastic{Min: f.workers, Max: f.workers}
	if f.seed != 0 {
		m.Seed = f.seed
	}
	m.Checkpoint.Interval = max(1, min(f.steps, m.Stages[0].Steps)/3)
	m.Checkpoint.Keep = 2
	m.Failure.StallGrace = api.Duration(2 * time.Minute)
	for i := range m.Stages {
		lr := f.lr
		m.Stages[i].Overrides.LR = &lr
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// devTextManifest is the text-pretraining job loom dev runs before the
// recipe: LWM's first text stage (causal LM on the synthetic text, packed)
// at the recipe's size, whose LLM the recipe's job then starts from.
func devTextManifest(f devFlags, uri func(shard.Kind) string) (*api.Manifest, error) {
	m, err := trainer.ExampleManifest("lwm", f.size, uri, f.pretrain, f.batch)
	if err != nil {
		return nil, err
	}
	m.Name = f.recipe + "-" + f.size + "-text"
	m.Stages = m.Stages[:1]
	m.Stages[0].Datasets = map[string]float64{trainer.DatasetName(shard.KindText): 1}
	var ds []api.Dataset
	for _, d := range m.Datasets {
		if d.Name == trainer.DatasetName(shard.KindText) {
			ds = append(ds, d)
		}
	}
	m.Datasets = ds
	m.Elastic = api.Elastic{Min: f.workers, Max: f.workers}
	if f.seed != 0 {
		m.Seed = f.seed
	}
	m.Checkpoint.Interval = max(1, f.pretrain/3)
	m.Checkpoint.Keep = 2
	m.Failure.StallGrace = api.Duration(2 * time.Minute)
	lr := f.lr
	m.Stages[0].Overrides.LR = &lr
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// devVQGANManifest is the VQGAN job loom dev runs before LWM: a VQGAN
// trained on the synthetic images, whose weights LWM's image tokenizer
// then starts from.
func devVQGANManifest(f devFlags, uri func(shard.Kind) string) (*api.Manifest, error) {
	m, err := trainer.ExampleManifest("vqgan", f.size, uri, f.vqgan, f.batch)
	if err != nil {
		return nil, err
	}
	m.Name = f.recipe + "-" + f.size + "-vqgan"
	m.Elastic = api.Elastic{Min: f.workers, Max: f.workers}
	if f.seed != 0 {
		m.Seed = f.seed
	}
	m.Checkpoint.Interval = max(1, f.vqgan/3)
	m.Checkpoint.Keep = 2
	m.Failure.StallGrace = api.Duration(2 * time.Minute)
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// devBLIP2Manifest is the BLIP-2 job loom dev runs before InstructBLIP:
// BLIP-2's representation stage (the Q-Former with its text side, which
// InstructBLIP's instruction goes through; the generative stage drops
// it), whose Q-Former and ViT InstructBLIP then starts from.
func devBLIP2Manifest(f devFlags, uri func(shard.Kind) string) (*api.Manifest, error) {
	m, err := trainer.ExampleManifest("blip2", f.size, uri, f.blip2, f.batch)
	if err != nil {
		return nil, err
	}
	m.Name = f.recipe + "-" + f.size + "-blip2"
	m.Stages = m.Stages[:1]
	m.Elastic = api.Elastic{Min: f.workers, Max: f.workers}
	if f.seed != 0 {
		m.Seed = f.seed
	}
	m.Checkpoint.Interval = max(1, f.blip2/3)
	m.Checkpoint.Keep = 2
	m.Failure.StallGrace = api.Duration(2 * time.Minute)
	lr := f.lr
	m.Stages[0].Overrides.LR = &lr
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// runDev trains f's recipe on a dev cluster (devcluster.Run): first the
// jobs its parts start from (text pretraining, LWM's VQGAN), then the
// recipe's job; or the job of --manifest.
func runDev(ctx context.Context, f devFlags, out io.Writer) error {
	if f.workers < 1 {
		return fmt.Errorf("--workers %d: want at least 1", f.workers)
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	o := devcluster.RunOptions{Bin: bin, Dir: f.dataDir, Keep: f.keep, Workers: f.workers, Samples: f.samples,
		EvalN: f.evalN, Data: f.data, KeepRunning: f.keepRunning}
	if (f.manifest != "" || f.data != "") && !f.evalSet {
		o.EvalN = 0 // the held-out pairs are synthetic
	}
	if f.manifest != "" {
		um, err := api.LoadManifest(f.manifest)
		if err != nil {
			return fmt.Errorf("--manifest: %w", err)
		}
		if um.Elastic.Min > f.workers {
			return fmt.Errorf("--manifest %s: elastic.min is %d and loom dev starts --workers %d", f.manifest, um.Elastic.Min, f.workers)
		}
		o.Kinds = synthKindsOf(um)
		o.Header = fmt.Sprintf("loom dev: %s (%s, %d stages, %d steps) from %s on %d workers", um.Name, um.Recipe, len(um.Stages), um.TotalSteps(), f.manifest, f.workers)
		o.Plan = func(func(shard.Kind) string) (devcluster.Plan, error) { return devcluster.Plan{Main: um}, nil }
		return devExit(devcluster.Run(ctx, o, out))
	}
	if f.batch%f.workers != 0 {
		return fmt.Errorf("--batch %d is not divisible by --workers %d", f.batch, f.workers)
	}
	first := f.steps
	if f.firstSteps > 0 {
		first = f.firstSteps
	}
	r, err := trainer.Lookup(f.recipe)
	if err != nil {
		return err
	}
	o.Kinds = r.Kinds()
	if f.pretrain > 0 && !slices.Contains(o.Kinds, shard.KindText) {
		o.Kinds = append(o.Kinds, shard.KindText)
	}
	// The jobs train with a BPE tokenizer learned from the synthetic text,
	// unless they train on --data, which it was not learned from.
	o.Tokenizer = f.data == ""
	o.Header = fmt.Sprintf("loom dev: %s at the %s size on %d workers, %d steps in the first stage and %d in each later one, global batch %d, lr %g",
		f.recipe, f.size, f.workers, first, f.steps, f.batch, f.lr)
	o.Plan = func(uri func(shard.Kind) string) (devcluster.Plan, error) {
		if f.data != "" {
			used := false
			for _, k := range r.Kinds() {
				used = used || uri(k) == "s3://"+devcluster.Bucket+"/"+devcluster.DataPrefix
			}
			if !used {
				return devcluster.Plan{}, fmt.Errorf("--data %s: recipe %s reads %s data, and this dataset is of none of those kinds", f.data, f.recipe, kindNames(r.Kinds()))
			}
		}
		m, err := devManifest(f, uri)
		if err != nil {
			return devcluster.Plan{}, err
		}
		p := devcluster.Plan{Main: m}
		if f.pretrain > 0 {
			tm, err := devTextManifest(f, uri)
			if err != nil {
				return p, err
			}
			p.Before = append(p.Before, devcluster.PreJob{Manifest: tm, Parts: []string{"llm"}, Loss: "text loss",
				Intro: fmt.Sprintf("text pretraining: %s trains the %s LLM on synthetic text for %d steps; %s starts its LLM from it", tm.Name, f.size, f.pretrain, m.Name)})
		}
		if f.vqgan > 0 {
			vm, err := devVQGANManifest(f, uri)
			if err != nil {
				return p, err
			}
			p.Before = append(p.Before, devcluster.PreJob{Manifest: vm, Parts: []string{"vqgan"}, Loss: "loss (reconstruction + codebook)",
				Intro: fmt.Sprintf("VQGAN: %s trains a %s VQGAN on the synthetic images for %d steps; %s tokenises its images with it", vm.Name, f.size, f.vqgan, m.Name)})
		}
		if f.blip2 > 0 {
			bm, err := devBLIP2Manifest(f, uri)
			if err != nil {
				return p, err
			}
			p.Before = append(p.Before, devcluster.PreJob{Manifest: bm, Parts: []string{"qformer", "vision"}, Loss: "loss (ITC + ITM + ITG)",
				Intro: fmt.Sprintf("BLIP-2: %s trains BLIP-2's representation stage at the %s size for %d steps; %s starts its Q-Former and ViT from it", bm.Name, f.size, f.blip2, m.Name)})
		}
		return p, nil
	}
	return devExit(devcluster.Run(ctx, o, out))
}

// devExit turns an interrupted run into exit status 130.
func devExit(err error) error {
	if errors.Is(err, devcluster.ErrInterrupted) {
		return &exitError{code: 130, err: err}
	}
	return err
}

// synthKindsOf are the synthetic datasets a manifest names in the dev
// bucket (s3://loom/datasets/KIND), which loom dev generates for it.
func synthKindsOf(m *api.Manifest) []shard.Kind {
	var out []shard.Kind
	for _, d := range m.Datasets {
		rest, ok := strings.CutPrefix(d.URI, "s3://"+devcluster.Bucket+"/datasets/")
		if !ok {
			continue
		}
		for _, k := range shard.Kinds {
			if rest == string(k) && !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out
}

func kindNames(ks []shard.Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}
