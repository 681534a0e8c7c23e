package devcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

// ErrInterrupted is what Run and RunJob return when their context ends
// while a job trains (Ctrl-C).
var ErrInterrupted = errors.New("interrupted")

// RunOptions configure Run.
type RunOptions struct {
	Bin     string // the loom binary the children run
	Dir     string // everything goes under it; "" makes a temporary one
	Keep    bool   // keep Dir at exit
	Workers int    // worker processes; every job runs on all of them
	// Kinds and Samples choose the synthetic data written into the
	// bucket: Samples of each kind, under datasets/KIND.
	Kinds   []shard.Kind
	Samples int
	// Data is a local dataset ingested into the bucket (Cluster.Ingest);
	// the URI Plan is given answers its URI for its kind.
	Data string
	// KeepRunning keeps the cluster up after the jobs until ctx ends,
	// and prints how to reach it.
	KeepRunning bool
	// Tokenizer trains a BPE tokenizer on the synthetic text of Kinds
	// (Cluster.WriteTokenizer) and names it as model.tokenizer of every
	// job of the plan that reads text and names none, as a project brings
	// its LLM's tokenizer.
	Tokenizer bool
	// EvalN is the number of held-out image-text pairs of the evaluation
	// after the last job (0 or 1: none).
	EvalN int
	// Header is printed first, followed by where everything lives.
	Header string
	// Plan builds the jobs from the URIs of the generated datasets.
	Plan func(uri func(shard.Kind) string) (Plan, error)
	// Logger receives the embedded servers' logs (nil: discarded, unless
	// the default logger is at debug level).
	Logger *slog.Logger
}

// Plan is what Run trains: Before's jobs in order, then Main, which
// starts the parts they name from their final checkpoints.
type Plan struct {
	Before []PreJob
	Main   *api.Manifest
}

// PreJob is a job run before the main one, whose checkpoint initialises
// parts of it (init: PART: {job: NAME}).
type PreJob struct {
	Manifest *api.Manifest
	Parts    []string // the main job's parts it initialises
	Intro    string   // printed before it starts
	Loss     string   // how the summary names its loss ("text loss")
}

// Run starts a cluster under o.Dir, writes the synthetic data, starts the
// workers, trains the plan's jobs one after another with progress bars,
// evaluates the main job's stages on held-out pairs, and stops everything.
func Run(ctx context.Context, o RunOptions, out io.Writer) error {
	if o.Workers < 1 {
		return fmt.Errorf("--workers %d: want at least 1", o.Workers)
	}
	dir := o.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "loom-dev-"); err != nil {
			return err
		}
	}
	if !o.Keep {
		defer os.RemoveAll(dir)
	}
	// The embedded etcd logs its own shutdown as errors; keep it quiet
	// unless debugging.
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if slog.Default().Enabled(ctx, slog.LevelDebug) {
			logger = slog.Default()
		}
	}
	start := time.Now()
	fmt.Fprintf(out, "%s; everything under %s\n", o.Header, dir)
	c, err := Start(ctx, Options{Dir: dir, Bin: o.Bin, Coordinators: 1, Logger: logger})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(out, "stopping workers, coordinator, S3 and etcd ...")
		c.Close()
	}()
	fmt.Fprintf(out, "  etcd         %s\n  S3           %s (bucket %s, key %s)\n  coordinator  %s\n  %s\n",
		strings.Join(c.etcd.Endpoints, ","), c.s3.Endpoint, Bucket, c.s3.AccessKey, c.apis[0], c.dashboardLine())
	uri, err := c.WriteSynth(ctx, o.Kinds, o.Samples)
	if err != nil {
		return err
	}
	if len(o.Kinds) > 0 {
		fmt.Fprintf(out, "  data         s3://%s/datasets/ (%d synthetic samples per kind: %s)\n", Bucket, o.Samples, kindList(o.Kinds))
	}
	if o.Data != "" {
		dataURI, kind, err := c.Ingest(ctx, o.Data, out)
		if err != nil {
			return err
		}
		synthURI := uri
		uri = func(k shard.Kind) string {
			if k == kind {
				return dataURI
			}
			return synthURI(k)
		}
	}
	for i := 0; i < o.Workers; i++ {
		p, err := c.StartWorker(fmt.Sprintf("w%d", i))
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  worker %-5s pid %d, metrics http://%s/metrics, log %s\n", p.ID, p.Cmd.Process.Pid, p.HTTP, p.LogPath)
	}
	plan, err := o.Plan(uri)
	if err != nil {
		return err
	}
	m := plan.Main
	if o.Tokenizer {
		tokURI, tok, err := c.WriteTokenizer(ctx, o.Kinds, o.Samples)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  tokenizer    %s (byte-level BPE trained on the synthetic text, %d tokens)\n", tokURI, tok.VocabSize())
		jobs := []*api.Manifest{m}
		for _, pre := range plan.Before {
			jobs = append(jobs, pre.Manifest)
		}
		for _, j := range jobs {
			if j.Recipe != "vqgan" && j.Model.Tokenizer == "" {
				j.Model.Tokenizer = tokURI
			}
		}
	}
	for _, pre := range plan.Before {
		fmt.Fprintln(out, pre.Intro)
		j, v, err := c.RunJob(ctx, pre.Manifest, true, out)
		if err != nil {
			return err
		}
		if first, last, ok := v.StageLosses(0); ok {
			fmt.Fprintf(out, "job %s succeeded: %d steps, %s %.3f at its first reported step, %.3f at its last\n", j.Name, j.Step, pre.Loss, first, last)
		} else {
			fmt.Fprintf(out, "job %s succeeded: %d steps\n", j.Name, j.Step)
		}
		if m.Init == nil {
			m.Init = map[string]api.InitSource{}
		}
		for _, part := range pre.Parts {
			m.Init[part] = api.InitSource{Job: pre.Manifest.Name}
		}
	}
	job, view, err := c.RunJob(ctx, m, false, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "job %s succeeded: %d steps in %s, %d restarts\n", job.Name, job.Step, time.Since(start).Round(time.Second), job.Restarts)
	for i, st := range m.Stages {
		if first, last, ok := view.StageLosses(i); ok {
			fmt.Fprintf(out, "  stage %s: training loss %.3f at its first reported step, %.3f at its last\n", st.Name, first, last)
		}
	}
	evaluated := false
	for i := range m.Stages {
		if st, err := trainer.Resolve(m, i); err == nil && st.Spec.Eval != "" {
			evaluated = true
		}
	}
	if evaluated && o.EvalN > 1 && len(m.Stages) > 1 {
		fmt.Fprintln(out, "  (each stage's training loss is over its own data mixture and loss terms; the held-out evaluation below compares the stages on the same pairs)")
	}
	if o.EvalN > 1 {
		// The coordinator's manifest: it records the checkpoints the init
		// block resolved to, which the evaluation's untrained baseline
		// starts from.
		full, err := c.GetJob(ctx, m.Name)
		if err != nil {
			return err
		}
		if m, err = api.ParseManifest(m.Name+" (coordinator)", full.ManifestYaml); err != nil {
			return err
		}
		if err := c.Evaluate(ctx, m, job, o.EvalN, out); err != nil {
			return fmt.Errorf("evaluation: %w", err)
		}
	}
	if o.KeepRunning {
		return c.serve(ctx, out)
	}
	c.othersLeft(ctx, out, m.Name)
	if o.Keep {
		fmt.Fprintf(out, "kept %s\n", dir)
	}
	return nil
}

func kindList(ks []shard.Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// serve keeps the cluster up until ctx ends (--keep-running), after
// saying how to reach it.
func (c *Cluster) serve(ctx context.Context, out io.Writer) error {
	fmt.Fprintf(out, "\nthe cluster keeps running (--keep-running); Ctrl-C stops it. From another shell:\n")
	fmt.Fprintf(out, "  export LOOM_COORDINATOR=%s\n", strings.Join(c.APIs(), ","))
	fmt.Fprintf(out, "  export LOOM_S3_ENDPOINT=%s LOOM_S3_ACCESS_KEY=%s LOOM_S3_SECRET_KEY=%s LOOM_S3_BUCKET=%s\n", c.s3.Endpoint, c.s3.AccessKey, c.s3.SecretKey, Bucket)
	fmt.Fprintf(out, "  loom status; loom submit MANIFEST.yaml; loom logs JOB --follow\n")
	fmt.Fprintf(out, "  %s\n", c.dashboardLine())
	<-ctx.Done()
	return nil
}

// dashboardLine names the coordinator's web UI at / when it answers
// there, and its Prometheus metrics otherwise.
func (c *Cluster) dashboardLine() string {
	addr := c.Coordinators()[0].HTTP
	if _, code := httpGet(addr + "/"); code == 200 {
		return fmt.Sprintf("dashboard    http://%s/", addr)
	}
	return fmt.Sprintf("metrics      http://%s/metrics (no web UI at / in this build)", addr)
}

// othersLeft says which jobs, submitted from outside loom dev, still run
// and stop with the cluster.
func (c *Cluster) othersLeft(ctx context.Context, out io.Writer, own string) {
	cc, err := c.Dial()
	if err != nil {
		return
	}
	defer cc.Close()
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := loompb.NewJobsClient(cc).ListJobs(lctx, &loompb.ListJobsRequest{})
	if err != nil {
		return
	}
	for _, j := range resp.Jobs {
		if j.State == "running" || j.State == "pending" {
			fmt.Fprintf(out, "job %s is %s at step %d of %d and stops with the cluster (loom dev --keep-running keeps it up)\n", j.Name, j.State, j.Step, j.TotalSteps)
		}
	}
}
