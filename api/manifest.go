package api

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Recipes are the training recipes a manifest may name.
var Recipes = []string{"blip2", "instructblip", "qwen-vl", "llava", "vila", "lwm", "vqgan"}

// ModelSizes are the model sizes a manifest may name; models/ maps each
// recipe and size to concrete dimensions (large is the paper's size).
// trainer's TestModelSizesHavePresets keeps the two in step.
var ModelSizes = []string{"tiny", "small", "large"}

// Schedules are the learning-rate schedules a stage may use.
var Schedules = []string{"cosine", "constant", "linear"}

// Manifest is one training job as a user submits it. The zero value is not
// valid; build one with ParseManifest, or fill it in and call Default and
// Validate. JSON tags define its encoding in the coordinator's replicated
// log; YAML tags define the normalised form.
type Manifest struct {
	// Name identifies the job: 1-63 characters of [a-z0-9-], starting with a
	// letter. Required.
	Name string `json:"name" yaml:"name"`
	// Recipe is one of Recipes. Required.
	Recipe string `json:"recipe" yaml:"recipe"`
	// Model picks the model size.
	Model Model `json:"model" yaml:"model"`
	// Init says where parts of the model start, by part name (InitParts):
	// a Hugging Face directory or another job's committed checkpoint. A
	// part not listed starts from the seed. A Hugging Face source also
	// sets its part's shape from its config.json, in place of the size
	// preset.
	Init map[string]InitSource `json:"init,omitempty" yaml:"init,omitempty"`
	// Seed fixes data order and initialisation. Default 1.
	Seed int64 `json:"seed" yaml:"seed"`
	// Datasets are the data sources and their mixture weights. At least one.
	Datasets []Dataset `json:"datasets" yaml:"datasets"`
	// GlobalBatch is the number of samples per optimizer step across all
	// ranks. Required; a stage may override it.
	GlobalBatch int `json:"global_batch" yaml:"global_batch"`
	// Elastic is the range of world sizes the job may run at.
	Elastic Elastic `json:"elastic" yaml:"elastic"`
	// Parallelism says how the data-parallel ranks split the training
	// state (docs/parallelism.md). Empty: every rank holds all of it.
	Parallelism Parallelism `json:"parallelism,omitzero" yaml:"parallelism,omitempty"`
	// Checkpoint says how often to checkpoint and how many to keep.
	Checkpoint CheckpointPolicy `json:"checkpoint" yaml:"checkpoint"`
	// Failure says how the coordinator reacts to lost or stalled workers.
	Failure FailurePolicy `json:"failure" yaml:"failure"`
	// Eval, when set, evaluates the model on held-out image-text pairs
	// every Every steps while it trains (rank 0; the results go into the
	// job's metric history as eval/* series).
	Eval *EvalPolicy `json:"eval,omitempty" yaml:"eval,omitempty"`
	// Defaults are the hyperparameters every stage starts from.
	Defaults Hyperparameters `json:"defaults" yaml:"defaults"`
	// Stages run in order. At least one.
	Stages []Stage `json:"stages" yaml:"stages"`

	// src is where ParseManifest read the manifest: its file and the line
	// of every field path it saw (Where, Explicit). Not encoded.
	src struct {
		file  string
		lines map[string]int
	}
}

// Where returns the file and line of the field at path (for example
// "stages[1].overrides.trainable[0]"), or of its nearest ancestor that the
// manifest spells out; line 0 when the manifest was not parsed from YAML.
func (m *Manifest) Where(path string) (string, int) { return m.src.file, lineOf(m.src.lines, path) }

// Explicit reports whether the parsed manifest spells out the field at
// path, as opposed to the field taking its default.
func (m *Manifest) Explicit(path string) bool {
	_, ok := m.src.lines[path]
	return ok
}

// FieldErrorf is a *FieldError at path, located with Where.
func (m *Manifest) FieldErrorf(path, format string, args ...any) *FieldError {
	file, line := m.Where(path)
	return &FieldError{File: file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// lineOf is the line of path, or of its nearest recorded ancestor (0: none).
func lineOf(lines map[string]int, path string) int {
	for p := path; ; {
		if l, ok := lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			return 0
		}
		p = p[:i]
	}
}

// Model selects the model of the recipe.
type Model struct {
	// Size is one of ModelSizes. Required.
	Size string `json:"size" yaml:"size"`
	// Tokenizer is s3://bucket/prefix or file:///path of a directory with
	// tokenizer files (Hugging Face tokenizer.json with
	// tokenizer_config.json, or a SentencePiece tokenizer.model): the
	// tokenizer the job trains with, in place of the one its init block's
	// llm or model source brings, or of Loom's byte-level tokenizer when
	// it has none. Loom's special tokens that it lacks are appended.
	// Checkpoints record it, so jobs that start from this one's
	// checkpoints, and `loom export`, use it too.
	Tokenizer string `json:"tokenizer,omitempty" yaml:"tokenizer,omitempty"`
}

// InitParts are the part names an init block may use: the whole model,
// or one component. The recipe says which components its model has.
var InitParts = []string{"model", "llm", "vision", "qformer", "vqgan"}

// InitSource is where one part of the model starts: exactly one of URI
// (a Hugging Face model directory: config.json and safetensors) and Job
// (the committed checkpoint of another Loom job).
type InitSource struct {
	// URI is s3://bucket/prefix or file:///path of a Hugging Face
	// directory (for vqgan: of LWM's pickled VQGAN file or a safetensors
	// file in Loom's names).
	URI string `json:"uri,omitempty" yaml:"uri,omitempty"`
	// Job names another job; its checkpoint at Step (0: the last
	// committed one) initialises the part.
	Job  string `json:"job,omitempty" yaml:"job,omitempty"`
	Step int64  `json:"step,omitempty" yaml:"step,omitempty"`
	// Checkpoint is filled in by the coordinator when the job is
	// submitted: the committed checkpoint Job and Step resolve to (one a
	// manifest sets is replaced).
	Checkpoint *ResolvedCheckpoint `json:"checkpoint,omitempty" yaml:"checkpoint,omitempty"`
}

// ResolvedCheckpoint is a committed checkpoint of another job, as the
// coordinator recorded it.
type ResolvedCheckpoint struct {
	Step    int64              `json:"step" yaml:"step"`
	Stage   int                `json:"stage" yaml:"stage"`
	Objects []CheckpointObject `json:"objects" yaml:"objects"`
}

// CheckpointObject is one object of a committed checkpoint.
type CheckpointObject struct {
	Path   string `json:"path" yaml:"path"`
	SHA256 string `json:"sha256" yaml:"sha256"`
	Size   int64  `json:"size" yaml:"size"`
}

// InitJobs returns the jobs the manifest's init sources name, sorted and
// without repeats.
func (m *Manifest) InitJobs() []string {
	seen := map[string]bool{}
	var out []string
	for _, k := range sortedKeys(m.Init) {
		if j := m.Init[k].Job; j != "" && !seen[j] {
			seen[j] = true
			out = append(out, j)
		}
	}
	sort.Strings(out)
	return out
}

// Dataset is one data source of the mixture.
type Dataset struct {
	// Name is how stages refer to the dataset: [a-z0-9_-]+, unique.
	Name string `json:"name" yaml:"name"`
	// URI is where the dataset index lives: s3://bucket/prefix or file:///path.
	URI string `json:"uri" yaml:"uri"`
	// Weight is the mixture weight (> 0), relative to the other datasets.
	// Default 1.
	Weight float64 `json:"weight" yaml:"weight"`
}

// Parallelism is how the ranks split the training state between them.
type Parallelism struct {
	// Shard is what each data-parallel rank keeps only its own slice of,
	// sharded across the whole world as ZeRO does (docs/parallelism.md):
	//   - "" or "none": nothing; every rank holds all parameters,
	//     gradients and optimizer state (plain data parallelism);
	//   - "optimizer": AdamW's moments (ZeRO stage 1); gradients are
	//     all-reduced, each rank updates its slice of the parameters and
	//     the ranks all-gather the result;
	//   - "gradients": the moments and the reduced gradients (ZeRO stage
	//     2); gradients are reduce-scattered instead of all-reduced.
	Shard string `json:"shard,omitempty" yaml:"shard,omitempty"`
}

// ShardLevels lists Parallelism.Shard's values, from least to most
// sharded.
var ShardLevels = []string{"none", "optimizer", "gradients"}

// ShardLevel is the index of p.Shard in ShardLevels (0 for ""), or -1.
func (p Parallelism) ShardLevel() int {
	if p.Shard == "" {
		return 0
	}
	return slices.Index(ShardLevels, p.Shard)
}

// Elastic is the range of world sizes a job may run at. The coordinator
// picks the largest size in [Min, Max] that the available workers allow and
// that divides the global batch of the current stage.
type Elastic struct {
	Min int `json:"min" yaml:"min"` // default 1
	Max int `json:"max" yaml:"max"` // default Min
}

// CheckpointPolicy controls checkpoint frequency and retention.
type CheckpointPolicy struct {
	// Interval is the number of optimizer steps between checkpoints. Default 1000.
	Interval int64 `json:"interval" yaml:"interval"`
	// Keep is how many of the most recent checkpoints are retained; the final
	// checkpoint of every stage is always kept as well. Default 3.
	Keep int `json:"keep" yaml:"keep"`
	// URI is the object-store prefix checkpoints are written under
	// (s3://bucket/prefix). Empty: the worker's default.
	URI string `json:"uri,omitempty" yaml:"uri,omitempty"`
}

// EvalPolicy is the evaluation a job runs while it trains: the trainer's
// retrieval evaluation (every image against every caption by the model's
// caption loss given the image) on the first Samples pairs of the dataset.
type EvalPolicy struct {
	// URI is an image-text dataset: s3://bucket/prefix or file:///path.
	URI string `json:"uri" yaml:"uri"`
	// Every is the number of optimizer steps between evaluations, in the
	// stages whose recipe evaluates (not the sequence-parallel ones).
	Every int64 `json:"every" yaml:"every"`
	// Samples is the number of pairs, 2-64 (Samples² forward passes per
	// evaluation). Default 16.
	Samples int `json:"samples,omitempty" yaml:"samples,omitempty"`
}

// FailurePolicy controls restarts.
type FailurePolicy struct {
	// MaxRestarts is how many new generations failures may cause before the
	// job is marked failed. Default 10.
	MaxRestarts int `json:"max_restarts" yaml:"max_restarts"`
	// StallFactor: a rank that reports no step for StallFactor times the
	// recent step time (but at least StallGrace) is considered stalled.
	// Default 10.
	StallFactor float64 `json:"stall_factor" yaml:"stall_factor"`
	// StallGrace is the least time without progress that counts as a stall;
	// it also covers start-up (loading weights and data). Default 5m.
	StallGrace Duration `json:"stall_grace" yaml:"stall_grace"`
}

// Duration is a time.Duration written as "90s" or "5m" in YAML and JSON.
type Duration time.Duration

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalText writes d as a duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a duration string such as "90s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Stage is one phase of the recipe, e.g. BLIP-2's representation stage.
type Stage struct {
	// Name is unique within the manifest; [a-z0-9_-]+.
	Name string `json:"name" yaml:"name"`
	// Steps is the number of optimizer steps of the stage (> 0).
	Steps int64 `json:"steps" yaml:"steps"`
	// GlobalBatch overrides the manifest's global batch for this stage.
	GlobalBatch int `json:"global_batch,omitempty" yaml:"global_batch,omitempty"`
	// Datasets overrides the mixture for this stage: dataset name → weight.
	// Empty: all datasets with their own weights.
	Datasets map[string]float64 `json:"datasets,omitempty" yaml:"datasets,omitempty"`
	// InitFrom names an earlier stage whose final checkpoint initialises
	// this one. Empty: continue from the previous stage.
	InitFrom string `json:"init_from,omitempty" yaml:"init_from,omitempty"`
	// Overrides replace the manifest defaults for this stage.
	Overrides Hyperparameters `json:"overrides,omitempty" yaml:"overrides,omitempty"`
}

// Hyperparameters of a stage. A nil field is unset: in Manifest.Defaults it
// takes the built-in default, in Stage.Overrides it keeps the default.
type Hyperparameters struct {
	LR             *float64 `json:"lr,omitempty" yaml:"lr,omitempty"`
	MinLR          *float64 `json:"min_lr,omitempty" yaml:"min_lr,omitempty"`
	WarmupSteps    *int64   `json:"warmup_steps,omitempty" yaml:"warmup_steps,omitempty"`
	Schedule       *string  `json:"schedule,omitempty" yaml:"schedule,omitempty"`
	WeightDecay    *float64 `json:"weight_decay,omitempty" yaml:"weight_decay,omitempty"`
	Beta1          *float64 `json:"beta1,omitempty" yaml:"beta1,omitempty"`
	Beta2          *float64 `json:"beta2,omitempty" yaml:"beta2,omitempty"`
	Eps            *float64 `json:"eps,omitempty" yaml:"eps,omitempty"`
	GradClip       *float64 `json:"grad_clip,omitempty" yaml:"grad_clip,omitempty"`
	MicroBatch     *int     `json:"micro_batch,omitempty" yaml:"micro_batch,omitempty"`
	MaxSeqLen      *int     `json:"max_seq_len,omitempty" yaml:"max_seq_len,omitempty"`
	ImageSize      *int     `json:"image_size,omitempty" yaml:"image_size,omitempty"`
	RopeTheta      *float64 `json:"rope_theta,omitempty" yaml:"rope_theta,omitempty"`
	LabelSmoothing *float64 `json:"label_smoothing,omitempty" yaml:"label_smoothing,omitempty"`
	// Recompute is activation checkpointing per decoder block: activations
	// are recomputed in the backward pass instead of kept
	// (docs/parallelism.md). Unset: false.
	Recompute *bool              `json:"recompute,omitempty" yaml:"recompute,omitempty"`
	Trainable []string           `json:"trainable,omitempty" yaml:"trainable,omitempty"`
	Losses    map[string]float64 `json:"losses,omitempty" yaml:"losses,omitempty"`
}

// builtinDefaults are the hyperparameters a manifest gets when it sets none.
func builtinDefaults() Hyperparameters {
	f := func(v float64) *float64 { return &v }
	i := func(v int) *int { return &v }
	i64 := func(v int64) *int64 { return &v }
	s := func(v string) *string { return &v }
	return Hyperparameters{
		LR: f(1e-4), MinLR: f(0), WarmupSteps: i64(0), Schedule: s("cosine"),
		WeightDecay: f(0.05), Beta1: f(0.9), Beta2: f(0.999), Eps: f(1e-8),
		GradClip: f(1), MaxSeqLen: i(512), ImageSize: i(224), RopeTheta: f(10000),
		LabelSmoothing: f(0),
	}
}

// Merge returns h with every field that o sets replaced by o's value.
func (h Hyperparameters) Merge(o Hyperparameters) Hyperparameters {
	r := h
	if o.LR != nil {
		r.LR = o.LR
	}
	if o.MinLR != nil {
		r.MinLR = o.MinLR
	}
	if o.WarmupSteps != nil {
		r.WarmupSteps = o.WarmupSteps
	}
	if o.Schedule != nil {
		r.Schedule = o.Schedule
	}
	if o.WeightDecay != nil {
		r.WeightDecay = o.WeightDecay
	}
	if o.Beta1 != nil {
		r.Beta1 = o.Beta1
	}
	if o.Beta2 != nil {
		r.Beta2 = o.Beta2
	}
	if o.Eps != nil {
		r.Eps = o.Eps
	}
	if o.GradClip != nil {
		r.GradClip = o.GradClip
	}
	if o.MicroBatch != nil {
		r.MicroBatch = o.MicroBatch
	}
	if o.MaxSeqLen != nil {
		r.MaxSeqLen = o.MaxSeqLen
	}
	if o.ImageSize != nil {
		r.ImageSize = o.ImageSize
	}
	if o.RopeTheta != nil {
		r.RopeTheta = o.RopeTheta
	}
	if o.LabelSmoothing != nil {
		r.LabelSmoothing = o.LabelSmoothing
	}
	if o.Recompute != nil {
		r.Recompute = o.Recompute
	}
	if o.Trainable != nil {
		r.Trainable = o.Trainable
	}
	if o.Losses != nil {
		r.Losses = o.Losses
	}
	return r
}

// Default fills in every unset field that has a default. It is idempotent.
func (m *Manifest) Default() {
	if m.Seed == 0 {
		m.Seed = 1
	}
	for i := range m.Datasets {
		if m.Datasets[i].Weight == 0 {
			m.Datasets[i].Weight = 1
		}
	}
	if m.Elastic.Min == 0 {
		m.Elastic.Min = 1
	}
	if m.Elastic.Max == 0 {
		m.Elastic.Max = m.Elastic.Min
	}
	if m.Checkpoint.Interval == 0 {
		m.Checkpoint.Interval = 1000
	}
	if m.Checkpoint.Keep == 0 {
		m.Checkpoint.Keep = 3
	}
	if m.Eval != nil && m.Eval.Samples == 0 {
		m.Eval.Samples = 16
	}
	if m.Failure.MaxRestarts == 0 {
		m.Failure.MaxRestarts = 10
	}
	if m.Failure.StallFactor == 0 {
		m.Failure.StallFactor = 10
	}
	if m.Failure.StallGrace == 0 {
		m.Failure.StallGrace = Duration(5 * time.Minute)
	}
	m.Defaults = builtinDefaults().Merge(m.Defaults)
}

// StageHyperparameters returns the effective hyperparameters of stage i:
// the manifest defaults with the stage's overrides applied.
func (m *Manifest) StageHyperparameters(i int) Hyperparameters {
	return builtinDefaults().Merge(m.Defaults).Merge(m.Stages[i].Overrides)
}

// StageGlobalBatch returns the global batch of stage i.
func (m *Manifest) StageGlobalBatch(i int) int {
	if g := m.Stages[i].GlobalBatch; g > 0 {
		return g
	}
	return m.GlobalBatch
}

// TotalSteps is the number of optimizer steps over all stages.
func (m *Manifest) TotalSteps() int64 {
	var n int64
	for _, s := range m.Stages {
		n += s.Steps
	}
	return n
}

// StageEnd returns the global step at which stage i ends (exclusive of
// later stages): the sum of the steps of stages 0..i.
func (m *Manifest) StageEnd(i int) int64 {
	var n int64
	for j := 0; j <= i && j < len(m.Stages); j++ {
		n += m.Stages[j].Steps
	}
	return n
}

// StageAt returns the index of the stage that global step `step` (the number
// of completed steps) falls in; a step at a stage boundary belongs to the
// next stage, and TotalSteps belongs to the last.
func (m *Manifest) StageAt(step int64) int {
	var end int64
	for i, s := range m.Stages {
		end += s.Steps
		if step < end {
			return i
		}
	}
	return len(m.Stages) - 1
}

// WorldSizes returns, in ascending order, the world sizes in the elastic
// range that divide the global batch of every stage.
func (m *Manifest) WorldSizes() []int {
	var out []int
	for w := m.Elastic.Min; w <= m.Elastic.Max && w > 0; w++ {
		ok := true
		for i := range m.Stages {
			if m.StageGlobalBatch(i)%w != 0 {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, w)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// FieldError is a problem with one field of a manifest.
type FieldError struct {
	File string // may be empty
	Line int    // 0 when unknown
	Path string // e.g. "stages[1].overrides.lr"
	Msg  string
}

func (e *FieldError) Error() string {
	loc := e.File
	if e.Line > 0 {
		if loc != "" {
			loc += ":"
		}
		loc += fmt.Sprint(e.Line)
	}
	if loc != "" {
		loc += ": "
	}
	if e.Path == "" {
		return loc + e.Msg
	}
	return loc + e.Path + ": " + e.Msg
}

// ManifestError lists every problem found in a manifest, in file order.
type ManifestError struct {
	Errs []*FieldError
}

func (e *ManifestError) Error() string {
	s := e.Errs[0].Error()
	if n := len(e.Errs); n > 1 {
		s += fmt.Sprintf(" (and %d more)", n-1)
		for _, fe := range e.Errs[1:] {
			s += "\n" + fe.Error()
		}
	}
	return s
}

// Unwrap returns the individual field errors.
func (e *ManifestError) Unwrap() []error {
	out := make([]error, len(e.Errs))
	for i, fe := range e.Errs {
		out[i] = fe
	}
	return out
}
