package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
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
	pretrain       int64 // steps of the text-pretraining job (0: none)
	vqgan          int64 // steps of the VQGAN job LWM's image tokenizer starts from (0: none)
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
coordinator's Raft log and every process's log in logs/.

Ctrl-C stops it all: the workers drain (checkpoint, then exit), then the
coordinator, S3 and etcd; nothing keeps running.

Example:
  loom dev                                  # BLIP-2 at the small size, 2 workers, ~4 minutes
  loom dev --seed 2                         # the same with another initialisation and data order
  loom dev --recipe vila                    # VILA's 3 stages at the tiny size, ~1 minute
  loom dev --recipe lwm --steps 20          # LWM's 8 stages, 20 steps each
  loom dev --size tiny --first-steps 30 --steps 10 --data-dir /tmp/loom-dev --keep`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
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
}

// devDefaults per recipe. BLIP-2 stage 1 (ITC + ITM + ITG) is what shows
// learning, and needs the small size and most of the steps (docs/worker.md
// "Defaults of loom dev"); the other recipes have 3 (Qwen-VL, VILA) or 8
// (LWM) stages, each trained at the tiny size with the same number of
// steps.
var devDefaults = map[string]devDefault{
	"blip2":   {size: "small", firstSteps: 450, steps: 150, pretrain: 300},
	"qwen-vl": {size: "tiny", steps: 150, pretrain: 300},
	"vila":    {size: "tiny", steps: 150, pretrain: 300},
	"lwm":     {size: "tiny", steps: 80, vqgan: 150},
	"vqgan":   {size: "tiny", steps: 300},
}

// devDefaultsTable is devDefaults as the help text shows it, in
// api.Recipes order.
func devDefaultsTable() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %-8s %-6s %-20s %-13s %-18s %s\n", "recipe", "size", "first job", "first stage", "each later stage", "stages")
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
		pre := "-"
		switch {
		case d.pretrain > 0:
			pre = fmt.Sprintf("LLM text, %d steps", d.pretrain)
		case d.vqgan > 0:
			pre = fmt.Sprintf("VQGAN, %d steps", d.vqgan)
		}
		fmt.Fprintf(&b, "  %-8s %-6s %-20s %3d steps     %3d steps          %s\n", name, d.size, pre, first, d.steps, stages)
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

// runJob submits m, follows it with progress bars and returns it once it
// succeeded.
func (c *devCluster) runJob(ctx context.Context, m *api.Manifest, out io.Writer) (*loompb.Job, *progressView, error) {
	if _, err := c.submit(ctx, m); err != nil {
		return nil, nil, fmt.Errorf("submit %s: %w", m.Name, err)
	}
	fmt.Fprintf(out, "  job          %s: %d stages, checkpoints in s3://%s/checkpoints/%s/\n", m.Name, len(m.Stages), devBucket, m.Name)
	view := newProgressView(out, m)
	// The job needs elastic.min workers: when so many have exited that it
	// cannot run, say which instead of waiting for it forever.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dead := make(chan string, 1)
	go func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-fctx.Done():
				return
			case <-tick.C:
			}
			c.mu.Lock()
			ws := append([]*devProc(nil), c.workers...)
			c.mu.Unlock()
			var gone []string
			for _, p := range ws {
				select {
				case <-p.done:
					gone = append(gone, fmt.Sprintf("%s (%v, log %s)", p.id, p.exitErr, p.logPath))
				default:
				}
			}
			if left := len(ws) - len(gone); left < m.Elastic.Min {
				dead <- fmt.Sprintf("job %s needs %d workers and %d are left: exited %s", m.Name, m.Elastic.Min, left, strings.Join(gone, ", "))
				cancel()
				return
			}
		}
	}()
	job, err := c.follow(fctx, m, view)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(out, "\ninterrupted")
			return nil, nil, &exitError{code: 130, err: errors.New("interrupted")}
		}
		select {
		case msg := <-dead:
			return nil, nil, errors.New(msg)
		default:
		}
		return nil, nil, err
	}
	if job.State != "succeeded" {
		return nil, nil, fmt.Errorf("job %s %s: %s (logs in %s)", job.Name, job.State, job.Message, filepath.Join(c.dir, "logs"))
	}
	return job, view, nil
}

func runDev(ctx context.Context, f devFlags, out io.Writer) error {
	if f.workers < 1 {
		return fmt.Errorf("--workers %d: want at least 1", f.workers)
	}
	if f.batch%f.workers != 0 {
		return fmt.Errorf("--batch %d is not divisible by --workers %d", f.batch, f.workers)
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	dir := f.dataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "loom-dev-"); err != nil {
			return err
		}
	}
	if !f.keep {
		defer os.RemoveAll(dir)
	}
	// The embedded etcd logs its own shutdown as errors; keep it quiet
	// unless debugging.
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if slog.Default().Enabled(ctx, slog.LevelDebug) {
		logger = slog.Default()
	}
	start := time.Now()
	first := f.steps
	if f.firstSteps > 0 {
		first = f.firstSteps
	}
	fmt.Fprintf(out, "loom dev: %s at the %s size on %d workers, %d steps in the first stage and %d in each later one, global batch %d, lr %g; everything under %s\n",
		f.recipe, f.size, f.workers, first, f.steps, f.batch, f.lr, dir)
	c, err := startDevCluster(ctx, devClusterOptions{Dir: dir, Bin: bin, Coordinators: 1, Logger: logger})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(out, "stopping workers, coordinator, S3 and etcd ...")
		c.Close()
	}()
	fmt.Fprintf(out, "  etcd         %s\n  S3           %s (bucket %s, key %s)\n  coordinator  %s\n  dashboard    http://%s/metrics\n",
		strings.Join(c.etcd.Endpoints, ","), c.s3.Endpoint, devBucket, c.s3.AccessKey, c.apis[0], c.coords[0].http)
	var extra []shard.Kind
	if f.pretrain > 0 {
		extra = append(extra, shard.KindText)
	}
	uri, err := c.writeData(ctx, f.recipe, f.samples, extra...)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  data         s3://%s/datasets/ (%d synthetic samples per kind)\n", devBucket, f.samples)
	for i := 0; i < f.workers; i++ {
		p, err := c.startWorker(fmt.Sprintf("w%d", i))
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  worker %-5s pid %d, metrics http://%s/metrics, log %s\n", p.id, p.cmd.Process.Pid, p.http, p.logPath)
	}
	m, err := devManifest(f, uri)
	if err != nil {
		return err
	}
	if f.pretrain > 0 {
		tm, err := devTextManifest(f, uri)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "text pretraining: %s trains the %s LLM on synthetic text for %d steps; %s starts its LLM from it\n", tm.Name, f.size, f.pretrain, m.Name)
		tj, tv, err := c.runJob(ctx, tm, out)
		if err != nil {
			return err
		}
		if l, ok := tv.losses[0]; ok {
			fmt.Fprintf(out, "job %s succeeded: %d steps, text loss %.3f at its first reported step, %.3f at its last\n", tj.Name, tj.Step, l[0], l[1])
		} else {
			fmt.Fprintf(out, "job %s succeeded: %d steps\n", tj.Name, tj.Step)
		}
		m.Init = map[string]api.InitSource{"llm": {Job: tm.Name}}
	}
	if f.vqgan > 0 {
		vm, err := devVQGANManifest(f, uri)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "VQGAN: %s trains a %s VQGAN on the synthetic images for %d steps; %s tokenises its images with it\n", vm.Name, f.size, f.vqgan, m.Name)
		vj, vv, err := c.runJob(ctx, vm, out)
		if err != nil {
			return err
		}
		if l, ok := vv.losses[0]; ok {
			fmt.Fprintf(out, "job %s succeeded: %d steps, loss (reconstruction + codebook) %.3f at its first reported step, %.3f at its last\n", vj.Name, vj.Step, l[0], l[1])
		} else {
			fmt.Fprintf(out, "job %s succeeded: %d steps\n", vj.Name, vj.Step)
		}
		if m.Init == nil {
			m.Init = map[string]api.InitSource{}
		}
		m.Init["vqgan"] = api.InitSource{Job: vm.Name}
	}
	job, view, err := c.runJob(ctx, m, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "job %s succeeded: %d steps in %s, %d restarts\n", job.Name, job.Step, time.Since(start).Round(time.Second), job.Restarts)
	for i, st := range m.Stages {
		if l, ok := view.losses[i]; ok {
			fmt.Fprintf(out, "  stage %s: training loss %.3f at its first reported step, %.3f at its last\n", st.Name, l[0], l[1])
		}
	}
	evaluated := false
	for i := range m.Stages {
		if st, err := trainer.Resolve(m, i); err == nil && st.Spec.Eval != "" {
			evaluated = true
		}
	}
	if evaluated && f.evalN > 1 && len(m.Stages) > 1 {
		fmt.Fprintln(out, "  (each stage's training loss is over its own data mixture and loss terms; the held-out evaluation below compares the stages on the same pairs)")
	}
	if f.evalN > 1 {
		// The coordinator's manifest: it records the checkpoints the init
		// block resolved to, which the evaluation's untrained baseline
		// starts from.
		full, err := c.getJob(ctx, m.Name)
		if err != nil {
			return err
		}
		if m, err = api.ParseManifest(m.Name+" (coordinator)", full.ManifestYaml); err != nil {
			return err
		}
		if err := c.evaluate(ctx, m, job, f.evalN, out); err != nil {
			return fmt.Errorf("evaluation: %w", err)
		}
	}
	if f.keep {
		fmt.Fprintf(out, "kept %s\n", dir)
	}
	return nil
}

// follow watches the job until it ends, feeding the view.
func (c *devCluster) follow(ctx context.Context, m *api.Manifest, v *progressView) (*loompb.Job, error) {
	var since int64
	for {
		cc, err := c.dial()
		if err != nil {
			return nil, err
		}
		s, err := loompb.NewJobsClient(cc).WatchJob(ctx, &loompb.WatchJobRequest{Job: m.Name, SinceSeq: since})
		if err == nil {
			for {
				ev, err := s.Recv()
				if err != nil {
					break
				}
				if ev.Seq > since {
					since = ev.Seq
				}
				v.event(ev)
				if st := ev.State; st != nil && (st.State == "succeeded" || st.State == "failed" || st.State == "cancelled") {
					cc.Close()
					v.done()
					return st, nil
				}
			}
		}
		cc.Close()
		if ctx.Err() != nil {
			v.done()
			return nil, ctx.Err()
		}
		time.Sleep(500 * time.Millisecond) // the coordinator restarts or changes leader
	}
}

// progressView draws one progress bar per stage on a terminal, or prints
// a line per step otherwise.
type progressView struct {
	out      io.Writer
	m        *api.Manifest
	tty      bool
	stage    int
	lastStep int64
	drawn    bool
	printed  int64 // stage step of the last plain line
	// losses holds each stage's first and last reported loss.
	losses map[int][2]float64
}

func newProgressView(out io.Writer, m *api.Manifest) *progressView {
	tty := false
	if f, ok := out.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &progressView{out: out, m: m, tty: tty, stage: -1, lastStep: -1, losses: map[int][2]float64{}}
}

func (v *progressView) line(s string) {
	if v.drawn {
		fmt.Fprintln(v.out)
		v.drawn = false
	}
	fmt.Fprintln(v.out, s)
}

func (v *progressView) event(ev *loompb.JobEvent) {
	if ev.Kind != "progress" && ev.Message != "" {
		v.line(fmt.Sprintf("  [%s] %s", ev.Kind, ev.Message))
	}
	j := ev.State
	if j == nil || j.State != "running" {
		return
	}
	stage := int(j.Stage)
	if stage != v.stage {
		v.stage = stage
		v.line(fmt.Sprintf("stage %d/%d %s (%d steps)", stage+1, len(v.m.Stages), j.StageName, v.m.Stages[stage].Steps))
	}
	if j.Step == v.lastStep {
		return
	}
	v.lastStep = j.Step
	start := int64(0)
	if stage > 0 {
		start = v.m.StageEnd(stage - 1)
	}
	n, total := j.Step-start, v.m.Stages[stage].Steps
	loss, ok := j.Losses["loss"]
	if n <= 0 || !ok {
		return // no step of this stage reported yet
	}
	l, seen := v.losses[stage]
	if !seen {
		l[0] = loss
	}
	l[1] = loss
	v.losses[stage] = l
	var terms []string
	keys := make([]string, 0, len(j.Losses))
	for k := range j.Losses {
		if k != "loss" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		terms = append(terms, fmt.Sprintf("%s %.3f", k, j.Losses[k]))
	}
	stats := fmt.Sprintf("%d/%d loss %.4f (%s) %.0f tok/s %.2fs/step", n, total, j.Losses["loss"], strings.Join(terms, " "), j.TokensPerSec, j.StepTimeSeconds)
	if !v.tty {
		// Plain lines: the stage's first report, one per 10 steps, its last.
		if !seen || n/10 > v.printed/10 || n >= total {
			fmt.Fprintf(v.out, "  %s step %s\n", j.StageName, stats)
			v.printed = n
		}
		return
	}
	const width = 30
	fill := int(int64(width) * min(n, total) / max(total, 1))
	fmt.Fprintf(v.out, "\r  [%s%s] %s\x1b[K", strings.Repeat("█", fill), strings.Repeat("░", width-fill), stats)
	v.drawn = true
}

func (v *progressView) done() {
	if v.drawn {
		fmt.Fprintln(v.out)
		v.drawn = false
	}
}

// heldOut are image-text pairs generated under another seed than the
// training data (7).
func heldOut(n int) []shard.Sample {
	out := make([]shard.Sample, n)
	for i := range out {
		out[i] = synth.Sample(shard.KindImageText, 99, i)
	}
	return out
}

// evaluate runs the trainer's evaluation on held-out pairs for every stage
// that has one, with the stage's final committed checkpoint, and for the
// first stage also with its initialisation (the untrained baseline).
func (c *devCluster) evaluate(ctx context.Context, m *api.Manifest, job *loompb.Job, n int, out io.Writer) error {
	samples := heldOut(n)
	open := func(ctx context.Context, d api.Dataset) (shard.ObjectStore, string, error) {
		loc, err := shard.ParseLocation(d.URI)
		if err != nil {
			return nil, "", err
		}
		return c.store, loc.Prefix, nil
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	eval := func(stage int, restore *trainer.CheckpointRef) (trainer.EvalResult, error) {
		run, err := trainer.NewRun(ctx, trainer.Job{Manifest: m, Stage: stage, World: 1, Store: c.store,
			CheckpointPrefix: "checkpoints/" + m.Name, OpenDataset: open, Logger: quiet}, restore)
		if err != nil {
			return trainer.EvalResult{}, err
		}
		defer run.Close()
		return run.Evaluate(ctx, samples)
	}
	var rows []devStageEval
	for i := range m.Stages {
		st, err := trainer.Resolve(m, i)
		if err != nil {
			return err
		}
		if st.Spec.Eval == "" {
			continue
		}
		var final *loompb.Checkpoint
		for _, cp := range job.Checkpoints {
			if cp.Step == m.StageEnd(i) {
				final = cp
			}
		}
		if final == nil {
			return fmt.Errorf("stage %s: no committed final checkpoint at step %d", st.Name, m.StageEnd(i))
		}
		ref, err := restoreOf(final)
		if err != nil {
			return err
		}
		if i > 0 {
			// A stage that builds another model (BLIP-2's generative
			// stage adds the LLM) is also evaluated as it starts: its
			// own untrained baseline.
			prev, err := trainer.Resolve(m, i-1)
			if err != nil {
				return err
			}
			if prev.Spec.ModelStage != st.Spec.ModelStage {
				var pf *loompb.Checkpoint
				for _, cp := range job.Checkpoints {
					if cp.Step == m.StageEnd(i-1) {
						pf = cp
					}
				}
				if pf == nil {
					return fmt.Errorf("stage %s: no committed final checkpoint at step %d", prev.Name, m.StageEnd(i-1))
				}
				pref, err := restoreOf(pf)
				if err != nil {
					return err
				}
				start, err := eval(i, pref)
				if err != nil {
					return fmt.Errorf("stage %s at its start: %w", st.Name, err)
				}
				fmt.Fprintf(out, "held-out retrieval, stage %s, at its start: text→image R@1 %.2f, image→text R@1 %.2f (chance %.2f), caption loss %.3f\n",
					st.Name, start.Retrieval, start.ImageToText, start.Chance, start.CaptionLoss)
				rows = append(rows, devStageEval{st.Name + " (start)", start})
			}
		}
		if i == 0 {
			before, err := eval(0, nil)
			if err != nil {
				return fmt.Errorf("stage %s before training: %w", st.Name, err)
			}
			fmt.Fprintf(out, "held-out retrieval, stage %s, untrained: text→image R@1 %.2f, image→text R@1 %.2f (chance %.2f), caption loss %.3f\n",
				st.Name, before.Retrieval, before.ImageToText, before.Chance, before.CaptionLoss)
			rows = append(rows, devStageEval{"untrained", before})
		}
		after, err := eval(i, ref)
		if err != nil {
			return fmt.Errorf("stage %s: %w", st.Name, err)
		}
		fmt.Fprintf(out, "held-out retrieval, stage %s, trained:   text→image R@1 %.2f (%.1fx chance), image→text R@1 %.2f (chance %.2f), caption loss %.3f, exact match %.2f\n",
			st.Name, after.Retrieval, after.Retrieval/after.Chance, after.ImageToText, after.Chance, after.CaptionLoss, after.ExactMatch)
		rows = append(rows, devStageEval{st.Name, after})
	}
	if len(rows) < 2 {
		return nil
	}
	fmt.Fprintf(out, "\nsummary: %d held-out image-text pairs (another seed than the training data); chance R@1 = %.3f\n", n, rows[0].r.Chance)
	fmt.Fprintf(out, "  %-16s %12s %22s %22s\n", "model", "caption loss", "text→image R@1", "image→text R@1")
	for _, r := range rows {
		fmt.Fprintf(out, "  %-16s %12.3f %14.3f (%4.1fx) %14.3f (%4.1fx)\n", r.name, r.r.CaptionLoss,
			r.r.Retrieval, r.r.Retrieval/r.r.Chance, r.r.ImageToText, r.r.ImageToText/r.r.Chance)
	}
	for _, n := range devEvalNotes(m, rows) {
		fmt.Fprintf(out, "note: %s\n", n)
	}
	var trained []devStageEval
	for _, r := range rows[1:] {
		if !strings.HasSuffix(r.name, " (start)") {
			trained = append(trained, r)
		}
	}
	fmt.Fprintf(out, "verdict: %s\n", devVerdict(rows[0].r, trained))
	return nil
}

// devEvalNotes explains each trained stage whose held-out caption loss is
// above an earlier stage's: what the stage trains on, and whether its
// caption loss is even of the same model.
func devEvalNotes(m *api.Manifest, rows []devStageEval) []string {
	var notes []string
	idx := map[string]int{}
	for i, st := range m.Stages {
		idx[st.Name] = i
	}
	for i := 2; i < len(rows); i++ {
		if strings.HasSuffix(rows[i].name, " (start)") {
			continue
		}
		best := 1
		for j := 2; j < i; j++ {
			if !strings.HasSuffix(rows[j].name, " (start)") && rows[j].r.CaptionLoss < rows[best].r.CaptionLoss {
				best = j
			}
		}
		cur, prev := rows[i], rows[best]
		if start := rows[i-1]; start.name == cur.name+" (start)" {
			notes = append(notes, fmt.Sprintf("stage %s trained from its start's held-out caption loss %.3f to %.3f (text→image R@1 %.2f → %.2f, chance %.2f)",
				cur.name, start.r.CaptionLoss, cur.r.CaptionLoss, start.r.Retrieval, cur.r.Retrieval, cur.r.Chance))
		}
		if cur.r.CaptionLoss <= prev.r.CaptionLoss {
			continue
		}
		st, err1 := trainer.Resolve(m, idx[cur.name])
		pst, err2 := trainer.Resolve(m, idx[prev.name])
		if err1 != nil || err2 != nil {
			continue
		}
		var kinds []string
		captions := false
		for _, k := range st.Spec.Kinds {
			kinds = append(kinds, string(k))
			captions = captions || k == shard.KindImageText
		}
		why := fmt.Sprintf("stage %s's held-out caption loss %.3f is above stage %s's %.3f: ", cur.name, cur.r.CaptionLoss, prev.name, prev.r.CaptionLoss)
		switch {
		case st.Spec.ModelStage != pst.Spec.ModelStage:
			why += fmt.Sprintf("they are different captioners (model stage %d vs %d: BLIP-2's stage 1 captions with the Q-Former's own decoder, stage 2 with the LLM from the Q-Former's soft prompts), so the numbers are not comparable", pst.Spec.ModelStage, st.Spec.ModelStage)
		case !captions:
			why += fmt.Sprintf("it trains on %s, no image-text captions, so captioning is not what it optimises and drifts", strings.Join(kinds, " and "))
		default:
			why += fmt.Sprintf("it trains on %s, captions among them, and still got worse on held-out captions: over-fitting, or --lr too high for %d steps", strings.Join(kinds, " and "), st.Steps)
		}
		notes = append(notes, why)
	}
	return notes
}

// devStageEval is one model's held-out evaluation in loom dev's summary.
type devStageEval struct {
	name string
	r    trainer.EvalResult
}

// devVerdict says whether the model learned, from the untrained model's
// held-out evaluation and the trained stages' (at least one): text→image retrieval at least 3x chance in some stage
// (what BLIP-2 stage 1 shows), or a held-out caption loss at most half the
// untrained one (what the generative recipes show at the tiny size, where
// retrieval over a few dozen pairs is noise).
func devVerdict(untrained trainer.EvalResult, trained []devStageEval) string {
	r, l := trained[0], trained[0]
	for _, e := range trained[1:] {
		if e.r.Retrieval > r.r.Retrieval {
			r = e
		}
		if e.r.CaptionLoss < l.r.CaptionLoss {
			l = e
		}
	}
	facts := fmt.Sprintf("best text→image R@1 %.3f (stage %s) is %.1fx chance; held-out caption loss %.3f untrained → %.3f (stage %s, the lowest)",
		r.r.Retrieval, r.name, r.r.Retrieval/r.r.Chance, untrained.CaptionLoss, l.r.CaptionLoss, l.name)
	switch {
	case r.r.Retrieval >= 3*r.r.Chance:
		return "the model learned: " + facts
	case l.r.CaptionLoss <= untrained.CaptionLoss/2:
		return "the model learned to caption (retrieval under 3x chance): " + facts
	}
	return "NOT clearly learned (retrieval under 3x chance, caption loss not halved); train longer (--first-steps, --steps) or at a higher --lr: " + facts
}

// restoreOf converts a committed checkpoint to the trainer's form.
func restoreOf(cp *loompb.Checkpoint) (*trainer.CheckpointRef, error) {
	ref := &trainer.CheckpointRef{Stage: int(cp.Stage), Step: cp.Step, Generation: uint64(cp.Generation), Samples: cp.SamplesConsumed}
	for _, o := range cp.Objects {
		key, ok := strings.CutPrefix(o.Path, "s3://"+devBucket+"/")
		if !ok {
			return nil, fmt.Errorf("checkpoint at step %d: object %q is not in s3://%s", cp.Step, o.Path, devBucket)
		}
		ref.Objects = append(ref.Objects, trainer.CheckpointObject{Path: key, SHA256: o.Sha256, Size: o.Size})
	}
	return ref, nil
}
