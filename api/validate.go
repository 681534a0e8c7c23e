package api

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
)

var (
	jobNameRE  = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	identRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	moduleRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)
	lossNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// Validate checks every field of m (after Default) and returns a
// *ManifestError listing all problems, or nil. Lines are filled in from
// lines (path → line), which ParseManifest records; it may be nil.
func (m *Manifest) Validate() error { return m.validate("", nil) }

type checker struct {
	file  string
	lines map[string]int
	errs  []*FieldError
}

func (c *checker) add(path, format string, args ...any) {
	// The nearest recorded ancestor gives the line.
	c.errs = append(c.errs, &FieldError{File: c.file, Line: lineOf(c.lines, path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (m *Manifest) validate(file string, lines map[string]int) error {
	c := &checker{file: file, lines: lines}
	if !jobNameRE.MatchString(m.Name) {
		c.add("name", "%q is not a valid job name: want 1-63 characters of a-z, 0-9 and '-', starting with a letter", m.Name)
	}
	if !contains(Recipes, m.Recipe) {
		c.add("recipe", "%q is not a recipe: want one of %s", m.Recipe, strings.Join(Recipes, ", "))
	}
	if !contains(ModelSizes, m.Model.Size) {
		c.add("model.size", "%q is not a model size: want one of %s", m.Model.Size, strings.Join(ModelSizes, ", "))
	}
	if m.Model.Tokenizer != "" && !validURI(m.Model.Tokenizer) {
		c.add("model.tokenizer", "%q: want s3://bucket/prefix or file:///path of a directory with tokenizer.json or tokenizer.model", m.Model.Tokenizer)
	}
	for _, part := range sortedKeys(m.Init) {
		src := m.Init[part]
		p := "init." + part
		if !contains(InitParts, part) {
			c.add(p, "%q is not a part: want one of %s", part, strings.Join(InitParts, ", "))
		}
		switch {
		case (src.URI == "") == (src.Job == ""):
			c.add(p, "want exactly one of uri (a Hugging Face directory) and job (another job's checkpoint)")
		case src.URI != "" && !validURI(src.URI):
			c.add(p+".uri", "%q: want s3://bucket/prefix or file:///path", src.URI)
		case src.URI != "" && (src.Step != 0 || src.Checkpoint != nil):
			c.add(p+".step", "step and checkpoint go with job, not uri")
		case src.Job != "" && !jobNameRE.MatchString(src.Job):
			c.add(p+".job", "%q is not a valid job name", src.Job)
		case src.Job != "" && src.Job == m.Name:
			c.add(p+".job", "a job cannot start from its own checkpoints (use stages and init_from)")
		case src.Step < 0:
			c.add(p+".step", "%d is negative", src.Step)
		}
		if rc := src.Checkpoint; rc != nil {
			if len(rc.Objects) == 0 || len(rc.Objects) > 4096 {
				c.add(p+".checkpoint.objects", "want 1 to 4096 objects, got %d", len(rc.Objects))
			}
			for i, o := range rc.Objects {
				if o.Path == "" || len(o.SHA256) != 64 || o.Size < 0 {
					c.add(fmt.Sprintf("%s.checkpoint.objects[%d]", p, i), "needs a path, a 64-hex-digit sha256 and a size")
				}
			}
		}
	}
	if m.Seed < 0 {
		c.add("seed", "%d is negative", m.Seed)
	}
	if len(m.Datasets) == 0 {
		c.add("datasets", "at least one dataset is required")
	}
	names := map[string]bool{}
	for i, d := range m.Datasets {
		p := fmt.Sprintf("datasets[%d]", i)
		if !identRE.MatchString(d.Name) {
			c.add(p+".name", "%q is not a valid dataset name: want [a-z0-9_-]+", d.Name)
		} else if names[d.Name] {
			c.add(p+".name", "dataset %q is listed twice", d.Name)
		}
		names[d.Name] = true
		if !validURI(d.URI) {
			c.add(p+".uri", "%q: want s3://bucket/prefix or file:///path", d.URI)
		}
		if !(d.Weight > 0) || math.IsInf(d.Weight, 0) {
			c.add(p+".weight", "%v: want a finite weight > 0", d.Weight)
		}
	}
	if m.GlobalBatch <= 0 {
		c.add("global_batch", "%d: want a positive number of samples per step", m.GlobalBatch)
	}
	if m.Elastic.Min < 1 {
		c.add("elastic.min", "%d: want at least 1", m.Elastic.Min)
	}
	if m.Elastic.Max < m.Elastic.Min {
		c.add("elastic.max", "%d is less than elastic.min (%d)", m.Elastic.Max, m.Elastic.Min)
	}
	if m.Elastic.Max > 100000 {
		c.add("elastic.max", "%d: want at most 100000", m.Elastic.Max)
	}
	if m.Parallelism.ShardLevel() < 0 {
		c.add("parallelism.shard", "%q: want one of %s", m.Parallelism.Shard, strings.Join(ShardLevels, ", "))
	}
	if m.Checkpoint.Interval < 1 {
		c.add("checkpoint.interval", "%d: want at least 1 step", m.Checkpoint.Interval)
	}
	if m.Checkpoint.Keep < 1 {
		c.add("checkpoint.keep", "%d: want at least 1", m.Checkpoint.Keep)
	}
	if e := m.Eval; e != nil {
		if !validURI(e.URI) {
			c.add("eval.uri", "%q: want s3://bucket/prefix or file:///path of an image-text dataset", e.URI)
		}
		if e.Every < 1 {
			c.add("eval.every", "%d: want the steps between evaluations, at least 1", e.Every)
		}
		if e.Samples != 0 && (e.Samples < 2 || e.Samples > MaxEvalSamples) {
			c.add("eval.samples", "%d: want 2-%d pairs (each evaluation takes samples² forward passes)", e.Samples, MaxEvalSamples)
		}
	}
	if m.Checkpoint.URI != "" && !validURI(m.Checkpoint.URI) {
		c.add("checkpoint.uri", "%q: want s3://bucket/prefix or file:///path", m.Checkpoint.URI)
	}
	if m.Failure.MaxRestarts < 0 {
		c.add("failure.max_restarts", "%d is negative", m.Failure.MaxRestarts)
	}
	if !(m.Failure.StallFactor >= 1) || math.IsInf(m.Failure.StallFactor, 0) {
		c.add("failure.stall_factor", "%v: want a finite factor >= 1", m.Failure.StallFactor)
	}
	if m.Failure.StallGrace <= 0 {
		c.add("failure.stall_grace", "%v: want a positive duration", m.Failure.StallGrace)
	}
	c.hyper("defaults", m.Defaults)
	if len(m.Stages) == 0 {
		c.add("stages", "at least one stage is required")
	}
	stages := map[string]int{}
	for i, s := range m.Stages {
		p := fmt.Sprintf("stages[%d]", i)
		if !identRE.MatchString(s.Name) {
			c.add(p+".name", "%q is not a valid stage name: want [a-z0-9_-]+", s.Name)
		} else if _, dup := stages[s.Name]; dup {
			c.add(p+".name", "stage %q is listed twice", s.Name)
		}
		if s.Steps < 1 || s.Steps > 1<<40 {
			c.add(p+".steps", "%d: want between 1 and 2^40 steps", s.Steps)
		}
		if s.GlobalBatch < 0 {
			c.add(p+".global_batch", "%d is negative", s.GlobalBatch)
		}
		for _, k := range sortedKeys(s.Datasets) {
			if !names[k] {
				c.add(p+".datasets."+k, "no dataset named %q in datasets", k)
			}
			if w := s.Datasets[k]; !(w >= 0) || math.IsInf(w, 0) {
				c.add(p+".datasets."+k, "%v: want a finite weight >= 0", w)
			}
		}
		if len(s.Datasets) > 0 {
			var sum float64
			for _, w := range s.Datasets {
				sum += w
			}
			if !(sum > 0) {
				c.add(p+".datasets", "all weights are zero")
			}
		}
		if s.InitFrom != "" {
			if _, ok := stages[s.InitFrom]; !ok {
				c.add(p+".init_from", "%q is not an earlier stage", s.InitFrom)
			}
		}
		c.hyper(p+".overrides", s.Overrides)
		stages[s.Name] = i
	}
	if len(c.errs) == 0 && len(m.WorldSizes()) == 0 {
		c.add("elastic", "no world size in %d..%d divides the global batch of every stage", m.Elastic.Min, m.Elastic.Max)
	}
	if len(c.errs) == 0 {
		for i := range m.Stages {
			h := m.StageHyperparameters(i)
			if *h.MinLR > *h.LR {
				c.add(fmt.Sprintf("stages[%d]", i), "min_lr %v is greater than lr %v", *h.MinLR, *h.LR)
			}
		}
	}
	if len(c.errs) == 0 {
		return nil
	}
	sort.SliceStable(c.errs, func(i, j int) bool { return c.errs[i].Line < c.errs[j].Line })
	return &ManifestError{Errs: c.errs}
}

// MaxEvalSamples bounds eval.samples.
const MaxEvalSamples = 64

func validURI(u string) bool {
	switch {
	case strings.HasPrefix(u, "s3://"):
		rest := u[len("s3://"):]
		bucket, _, _ := strings.Cut(rest, "/")
		return len(bucket) >= 3 && len(bucket) <= 63 && !strings.ContainsAny(bucket, " \t\n")
	case strings.HasPrefix(u, "file:///"):
		return len(u) > len("file:///")
	}
	return false
}

func (c *checker) hyper(p string, h Hyperparameters) {
	pos := func(name string, v *float64) {
		if v != nil && (!(*v > 0) || math.IsInf(*v, 0)) {
			c.add(p+"."+name, "%v: want a finite number > 0", *v)
		}
	}
	nonneg := func(name string, v *float64) {
		if v != nil && (!(*v >= 0) || math.IsInf(*v, 0)) {
			c.add(p+"."+name, "%v: want a finite number >= 0", *v)
		}
	}
	unit := func(name string, v *float64) { // [0, 1)
		if v != nil && !(*v >= 0 && *v < 1) {
			c.add(p+"."+name, "%v: want a number in [0, 1)", *v)
		}
	}
	posInt := func(name string, v *int) {
		if v != nil && *v < 1 {
			c.add(p+"."+name, "%d: want at least 1", *v)
		}
	}
	pos("lr", h.LR)
	nonneg("min_lr", h.MinLR)
	if h.WarmupSteps != nil && *h.WarmupSteps < 0 {
		c.add(p+".warmup_steps", "%d is negative", *h.WarmupSteps)
	}
	if h.Schedule != nil && !contains(Schedules, *h.Schedule) {
		c.add(p+".schedule", "%q is not a schedule: want one of %s", *h.Schedule, strings.Join(Schedules, ", "))
	}
	nonneg("weight_decay", h.WeightDecay)
	unit("beta1", h.Beta1)
	unit("beta2", h.Beta2)
	pos("eps", h.Eps)
	nonneg("grad_clip", h.GradClip)
	posInt("micro_batch", h.MicroBatch)
	posInt("max_seq_len", h.MaxSeqLen)
	posInt("image_size", h.ImageSize)
	pos("rope_theta", h.RopeTheta)
	unit("label_smoothing", h.LabelSmoothing)
	seen := map[string]bool{}
	for i, mod := range h.Trainable {
		if !moduleRE.MatchString(mod) {
			c.add(fmt.Sprintf("%s.trainable[%d]", p, i), "%q is not a module name", mod)
		} else if seen[mod] {
			c.add(fmt.Sprintf("%s.trainable[%d]", p, i), "module %q is listed twice", mod)
		}
		seen[mod] = true
	}
	for _, k := range sortedKeys(h.Losses) {
		if !lossNameRE.MatchString(k) {
			c.add(p+".losses."+k, "%q is not a loss name: want [a-z][a-z0-9_]*", k)
		}
		if w := h.Losses[k]; !(w >= 0) || math.IsInf(w, 0) {
			c.add(p+".losses."+k, "%v: want a finite weight >= 0", w)
		}
	}
}
