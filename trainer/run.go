package trainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/tokenizer"
	"github.com/loomtrain/loom/models/vqgan"
	"github.com/loomtrain/loom/shard"
)

// ManifestName is the file name of a checkpoint's manifest object.
const ManifestName = "manifest.json"

// ErrDone is returned by Step once the stage (or Job.StopStep) is reached.
var ErrDone = errors.New("trainer: stage done")

// bucketFloats is the gradient bucket size of the data-parallel all-reduce
// (4 MiB of float32, within PyTorch DDP's 1–25 MB range).
const bucketFloats = 1 << 20

// Run trains one stage on one rank. It is driven by one goroutine: Step,
// Checkpoint, Evaluate and Close must not be called concurrently (the
// uploads Checkpoint starts run in the background and only read a private
// copy of the state).
type Run struct {
	job    Job
	log    *slog.Logger
	now    func() time.Time
	stage  *Stage
	model  models.Model
	cfg    models.Config
	params []*kernels.Tensor // trainable, in tree order
	opt    *kernels.AdamW
	sched  Schedule
	clip   float64

	data    *dataSource
	builder *rowBuilder

	step    int64 // global steps completed
	samples int64 // samples of the stage's stream consumed
	finals  map[int]CheckpointRef

	sp *seqParallel // sequence-parallel stages (ring attention), nil otherwise
	// evalPairs are the manifest's eval pairs, read at the first
	// evaluation.
	evalPairs []shard.Sample

	reduce    *gradReduce // the data-parallel gradient all-reduce (world > 1)
	zero      *zero       // the sharded optimizer state (parallelism.shard, world > 1), or nil
	noOverlap bool        // start the all-reduce after backward (the benchmark's baseline)
	groupNeg  bool        // BLIP-2 stage 1 at world > 1: ITC/ITM over the global batch, one micro-batch per rank (group.go)
	// contrastAcc: BLIP-2 stage 1: with more than one micro-batch per rank,
	// ITC/ITM over the global batch through GradCache (group.go).
	contrastAcc bool
	noGradCache bool // benchmark baseline: with accumulation, contrast within each micro-batch instead

	uploads sync.WaitGroup

	initSrcs     []*initSource // the manifest's init block, opened
	vqParams     *nn.Params    // LWM's image tokenizer's parameters
	tokenizerURI string        // where the job's tokenizer files are ("": Loom's byte-level one)

	dev kernels.Device // Job.Device, opened
}

// moveParams moves every parameter of the model (trainable or not) to d.
func (r *Run) moveParams(d kernels.Device) {
	for _, p := range r.model.Params().All() {
		p.MoveTo(d)
	}
}

// applyInit loads the init sources that apply to this stage (see
// loadInit); loaded are the parameters an earlier stage's checkpoint gave.
func (r *Run) applyInit(ctx context.Context, loaded []string) error {
	if len(r.initSrcs) == 0 {
		return nil
	}
	set := map[string]bool{}
	for _, n := range loaded {
		set[n] = true
	}
	rep, err := loadInit(ctx, r.job, r.initSrcs, r.model, true, set)
	if err != nil {
		return err
	}
	for _, p := range rep.Parts {
		if p.Deferred != "" {
			r.log.Info("trainer: init source not applied to this stage", "part", p.Part, "source", p.Source, "why", p.Deferred)
			continue
		}
		r.log.Info("trainer: initialised from "+p.Source, "stage", r.stage.Name, "part", p.Part, "layout", p.Layout, "tensors", len(p.Tensors), "bytes", p.Bytes)
	}
	if len(rep.RandomInit) > 0 {
		r.log.Info("trainer: parameters left at their random init", "count", len(rep.RandomInit), "first", rep.RandomInit[0])
	}
	return nil
}

// NewRun builds the stage's model and optimizer and positions the data
// stream.
//
// restore is the last committed checkpoint. If it belongs to this stage,
// the run resumes from it exactly: weights, AdamW moments and step count,
// and the data position. If it belongs to an earlier stage it is that
// stage's final checkpoint, and the run initialises from it: weights only
// (the recipe stage's InitOnly/InitSkip), a fresh optimizer, the data
// stream at its start; when the stage's InitFrom names an earlier stage
// than restore's, that stage's final checkpoint is found through the
// restore's manifest. A stage with nothing to initialise from (the first)
// takes restore nil and starts from the manifest's seed. Every object read
// is checked against its sha256 (errors name the object and the tensor).
func NewRun(ctx context.Context, j Job, restore *CheckpointRef) (*Run, error) {
	if err := j.check(); err != nil {
		return nil, err
	}
	st, err := Resolve(j.Manifest, j.Stage)
	if err != nil {
		return nil, fmt.Errorf("trainer: manifest %s: %w", j.Manifest.Name, err)
	}
	r := &Run{job: j, stage: st, log: j.Logger, now: j.Now, step: st.Start, finals: map[int]CheckpointRef{}}
	if r.dev, err = kernels.OpenDevice(j.Device); err != nil {
		return nil, fmt.Errorf("trainer: job: %w", err)
	}
	if !r.dev.IsHost() && st.Spec.RingAttention && j.World > 1 {
		return nil, fmt.Errorf("trainer: stage %q: ring attention runs on the host; device %q is for data-parallel stages", st.Name, j.Device)
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.now == nil {
		r.now = time.Now
	}
	var srcs []*initSource
	if len(j.Manifest.Init) > 0 {
		if srcs, err = openInit(ctx, j, st.Recipe.Family); err != nil {
			return nil, err
		}
	}
	r.initSrcs = srcs
	tok := j.Tokenizer
	if tok == nil {
		if tok, r.tokenizerURI, err = initTokenizer(ctx, j, srcs); err != nil {
			return nil, err
		}
	}
	if tok == nil {
		tok, err = tokenizer.NewBPE(nil, tokenizer.DefaultSpecial)
		if err != nil {
			return nil, err
		}
	}
	if r.cfg, err = stageConfig(j.Manifest, st, tok, srcs); err != nil {
		return nil, fmt.Errorf("trainer: stage %q: %w", st.Name, err)
	}
	if j.configure != nil {
		j.configure(&r.cfg)
	}
	if r.model, err = models.New(r.cfg, seed(j.Manifest)); err != nil {
		return nil, fmt.Errorf("trainer: stage %q: %w", st.Name, err)
	}
	if err := r.applyTrainable(); err != nil {
		return nil, err
	}
	r.params = r.model.Params().Trainable()
	h := st.Hyper
	r.sched = Schedule{Kind: *h.Schedule, Peak: *h.LR, Min: *h.MinLR, Steps: st.Steps}
	if st.Spec.WarmupRatio > 0 && !warmupSet(j.Manifest, st.Index) {
		r.sched.Warmup = int64(math.Ceil(st.Spec.WarmupRatio * float64(st.Steps)))
	} else {
		r.sched.Warmup = *h.WarmupSteps
	}
	if r.sched.Min > r.sched.Peak {
		r.sched.Min = r.sched.Peak
	}
	if err := r.sched.Validate(); err != nil {
		return nil, fmt.Errorf("trainer: stage %q: %w", st.Name, err)
	}
	r.clip = *h.GradClip
	r.opt = kernels.NewAdamW(r.params, kernels.AdamWConfig{
		LR: float32(r.sched.LR(0)), Beta1: float32(*h.Beta1), Beta2: float32(*h.Beta2), Eps: float32(*h.Eps),
		WeightDecay: float32(*h.WeightDecay), Decay: decayMask(r.params)})
	if j.World > 1 {
		r.reduce = newGradReduce(j.Comm, r.params, bucketFloats)
		if level := j.Manifest.Parallelism.ShardLevel(); level > 0 {
			r.zero = newZero(level, j.Comm, r.reduce, r.params)
			r.opt = r.zero.optimizer(r.opt.Config, decayMask(r.params))
		}
	}

	if restore != nil {
		if err := r.restore(ctx, restore); err != nil {
			return nil, err
		}
	} else if st.InitFrom >= 0 {
		return nil, fmt.Errorf("trainer: stage %q initialises from stage %q's final checkpoint: restore is nil",
			st.Name, j.Manifest.Stages[st.InitFrom].Name)
	} else if err := r.applyInit(ctx, nil); err != nil {
		// The job's first stage: the manifest's init block.
		return nil, err
	}

	r.builder = &rowBuilder{format: st.Spec.Format, kinds: st.Spec.Kinds, tok: tok, cfg: r.cfg, maxLen: st.MaxSeqLen,
		imageSize: r.cfg.ImageSize, augment: st.Spec.Augment, seed: seed(j.Manifest) ^ uint64(st.Index)<<32}
	if r.cfg.Family == models.LWM {
		if r.builder.vq, r.vqParams, err = lwmTokenizer(ctx, r.cfg, seed(j.Manifest), srcs); err != nil {
			return nil, err
		}
	}
	if r.data, err = openData(ctx, j, st); err != nil {
		return nil, err
	}
	if st.Spec.RingAttention && j.World > 1 {
		if st.Spec.Normaliser != PerToken || st.Recipe.Family != models.LWM {
			return nil, fmt.Errorf("trainer: stage %q: ring attention needs an LWM stage with a per-token loss", st.Name)
		}
		r.sp = &seqParallel{comm: j.Comm, p: r.model.Params(), cfg: r.cfg, layout: collective.Zigzag}
	}
	if r.cfg.Family == models.BLIP2 && r.cfg.Stage == 1 {
		if _, ok := r.model.(contrastive); !ok {
			return nil, fmt.Errorf("trainer: stage %q: the BLIP-2 stage-1 model has no GradCache first pass", st.Name)
		}
		r.contrastAcc = true
		if j.World > 1 {
			if st.GlobalBatch%j.World != 0 {
				return nil, fmt.Errorf("trainer: stage %q: BLIP-2 stage 1 contrasts the global batch across the ranks: global batch %d must divide by the world size %d",
					st.Name, st.GlobalBatch, j.World)
			}
			r.groupNeg = true
		}
	}
	if r.groupNeg && !r.dev.IsHost() {
		// The group's gathers exchange host slices of the features.
		return nil, fmt.Errorf("trainer: stage %q: BLIP-2 stage 1 across %d ranks runs on the host; device %q is not supported for it yet", st.Name, j.World, j.Device)
	}
	r.log.Info("trainer: stage ready", "job", j.Manifest.Name, "stage", st.Name, "rank", j.Rank, "world", j.World,
		"step", r.step, "samples", r.samples, "trainable", countParams(r.params), "params", r.model.Params().Count(), "device", r.dev.String())
	return r, nil
}

func (j *Job) check() error {
	switch {
	case j.Manifest == nil:
		return fmt.Errorf("trainer: job: manifest is nil")
	case j.Stage < 0 || j.Stage >= len(j.Manifest.Stages):
		return fmt.Errorf("trainer: job: stage %d: the manifest has %d stages", j.Stage, len(j.Manifest.Stages))
	case j.World < 1 || j.Rank < 0 || j.Rank >= j.World:
		return fmt.Errorf("trainer: job: rank %d of world %d", j.Rank, j.World)
	case j.World > 1 && j.Comm == nil:
		return fmt.Errorf("trainer: job: world %d needs a communicator", j.World)
	case j.Comm != nil && (j.Comm.Rank() != j.Rank || j.Comm.World() != j.World):
		return fmt.Errorf("trainer: job: communicator is rank %d of %d, job says %d of %d", j.Comm.Rank(), j.Comm.World(), j.Rank, j.World)
	case j.Store == nil:
		return fmt.Errorf("trainer: job: checkpoint store is nil")
	}
	return nil
}

func seed(m *api.Manifest) uint64 { return uint64(m.Seed) }

func warmupSet(m *api.Manifest, i int) bool {
	if m.Stages[i].Overrides.WarmupSteps != nil {
		return true
	}
	b := builtinHyper()
	return m.Defaults.WarmupSteps != nil && *m.Defaults.WarmupSteps != *b.WarmupSteps
}

// stageConfig is the model configuration of a stage: the family's preset at
// the manifest's size, with the stage's resolution, RoPE θ and BLIP-2
// model stage. The ViT's learned position grid stays the preset's, so a
// resolution change interpolates it (bicubic, Qwen-VL get_abs_pos) and
// checkpoints load across stages.
func stageConfig(m *api.Manifest, st *Stage, tok tokenizer.Tokenizer, srcs []*initSource) (models.Config, error) {
	size, err := modelSize(m.Model.Size)
	if err != nil {
		return models.Config{}, err
	}
	cfg, err := models.Preset(st.Recipe.Family, size)
	if err != nil {
		return cfg, err
	}
	if st.Spec.ModelStage > 0 {
		cfg.Stage = st.Spec.ModelStage
	}
	if err := configureInit(srcs, &cfg); err != nil {
		return cfg, err
	}
	initVocab := cfg.LLM.Vocab
	if cfg, err = cfg.WithTokenizer(tok); err != nil {
		return cfg, err
	}
	// A pretrained LLM keeps its vocabulary when it is larger than the
	// tokenizer's; when the tokenizer's is larger (Loom's special tokens
	// appended), the embedding rows it adds start at random (PadRows).
	if len(srcs) > 0 && initVocab > cfg.LLM.Vocab && hasLLMInit(srcs) {
		cfg.LLM.Vocab = initVocab
	}
	if cfg.ViT.PatchSize > 0 && cfg.ViT.PosGrid == 0 {
		cfg.ViT.PosGrid = cfg.ViT.ImageSize / cfg.ViT.PatchSize
	}
	if st.ImageSize > 0 {
		cfg.ImageSize = st.ImageSize
	} else if f := st.Spec.ImageFactor; f > 0 && f != 1 {
		cfg.ImageSize = int(math.Round(float64(cfg.ImageSize) * f))
	}
	cfg.LossWeights = st.Losses
	b := builtinHyper()
	if st.Spec.RopeTheta > 0 {
		cfg.LLM.Theta = st.Spec.RopeTheta
	}
	if m.Stages[st.Index].Overrides.RopeTheta != nil || *m.Defaults.RopeTheta != *b.RopeTheta {
		cfg.LLM.Theta = *st.Hyper.RopeTheta
	}
	if m.Stages[st.Index].Overrides.LabelSmoothing != nil || *m.Defaults.LabelSmoothing != *b.LabelSmoothing {
		cfg.LabelSmoothing = float32(*st.Hyper.LabelSmoothing)
	}
	if h := st.Hyper.Recompute; h != nil {
		cfg.LLM.Recompute = *h
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("model: %w", err)
	}
	return cfg, nil
}

func hasLLMInit(srcs []*initSource) bool {
	for _, s := range srcs {
		if s.part == "llm" || s.part == "model" {
			return true
		}
	}
	return false
}

// lwmTokenizer is LWM's frozen VQGAN image tokenizer: the init block's
// vqgan source (LWM's pretrained VQGAN, a Loom VQGAN file or job), loaded
// at every stage since it is not part of the model's checkpoints; without
// one, the VQGAN preset at the model's size drawn from the seed (the codes
// are then a fixed random projection of the pixels, still a deterministic
// tokenisation).
func lwmTokenizer(ctx context.Context, c models.Config, seed uint64, srcs []*initSource) (*vqgan.VQGAN, *nn.Params, error) {
	vc, err := models.Preset(models.VQGAN, c.Size)
	if err != nil {
		return nil, nil, err
	}
	cfg := vc.VQGAN
	cfg.Codebook = c.Codebook
	src := vqganSource(srcs)
	if src != nil {
		cfg = c.VQGAN
	}
	p := nn.NewParams()
	vq, err := vqgan.New(p, nn.Rng(seed^0x76716761), "vqgan", cfg)
	if err != nil {
		return nil, nil, err
	}
	if src != nil {
		if err := src.loadVQGAN(ctx, p); err != nil {
			return nil, nil, fmt.Errorf("trainer: init.vqgan: %w", err)
		}
	}
	return vq, p, nil
}

// applyTrainable freezes everything but the stage's trainable patterns.
func (r *Run) applyTrainable() error {
	spec := r.stage.Spec
	p := r.model.Params()
	if r.stage.Trainable != nil {
		if _, err := p.Freeze("**"); err != nil {
			return fmt.Errorf("trainer: stage %q: freeze: %w", r.stage.Name, err)
		}
		for _, pat := range r.stage.Trainable {
			if _, err := p.Unfreeze(pat); err != nil {
				return fmt.Errorf("trainer: stage %q: trainable %q: %w", r.stage.Name, pat, err)
			}
		}
	}
	if len(spec.Frozen) > 0 {
		if _, err := p.Freeze(spec.Frozen...); err != nil {
			return fmt.Errorf("trainer: stage %q: frozen: %w", r.stage.Name, err)
		}
	}
	// What no gradient reaches does not train (not even by weight decay).
	if pats := r.model.Config().Unreached(); len(pats) > 0 {
		if _, err := p.Freeze(pats...); err != nil {
			return fmt.Errorf("trainer: stage %q: freeze %v: %w", r.stage.Name, pats, err)
		}
	}
	if len(p.Trainable()) == 0 {
		return fmt.Errorf("trainer: stage %q: no parameter is trainable", r.stage.Name)
	}
	return nil
}

// buckets cuts the flat gradient buffer into all-reduce buckets in the
// order the backward pass finishes them: the last parameters first (the
// flat layout is reversed tree order, the loss slot last).
func buckets(flat []float32, size int) [][]float32 {
	var out [][]float32
	start := 0
	for start < len(flat) {
		end := min(start+size, len(flat))
		out = append(out, flat[start:end])
		start = end
	}
	return out
}

func countParams(ps []*kernels.Tensor) int {
	n := 0
	for _, p := range ps {
		n += len(p.Data)
	}
	return n
}

// Done reports whether the stage (or Job.StopStep) is reached.
func (r *Run) Done() bool {
	end := r.stage.Start + r.stage.Steps
	if r.job.StopStep > 0 && r.job.StopStep < end {
		end = r.job.StopStep
	}
	return r.step >= end
}

// State returns where the run stands.
func (r *Run) State() State {
	return State{Stage: r.stage.Index, Step: r.step, StageStep: r.step - r.stage.Start, StageSteps: r.stage.Steps,
		Samples: r.samples, Seed: seed(r.job.Manifest)}
}

// Stage returns the resolved stage the run trains.
func (r *Run) Stage() *Stage { return r.stage }

// Model returns the model (for evaluation and tests; do not use it
// concurrently with Step).
func (r *Run) Model() models.Model { return r.model }

// Close waits for background uploads and releases the data readers. It
// does not close the Comm (the caller owns it).
func (r *Run) Close() error {
	r.uploads.Wait()
	if r.data != nil {
		return r.data.Close()
	}
	return nil
}

// micro is one micro-batch with its weight in the global loss.
type micro struct {
	rows   []row
	first  int // index in the global batch of its first sample
	weight float64
	count  int // normaliser units (trained tokens or samples)
}

// assemble builds micro-batch k's model batch. Its seed is the step's,
// the same on every rank and micro-batch, and RowOffset places its rows in
// the global batch, so that the model's random choices (BLIP-2's dropout
// masks, ITM negatives) are functions of (seed, step, sample position)
// whatever the world size and micro_batch.
func (r *Run) assemble(m micro) (*models.Batch, error) {
	b, err := assemble(m.rows, stepSeed(seed(r.job.Manifest), r.step))
	if err != nil {
		return nil, err
	}
	b.RowOffset = m.first
	return b, nil
}

// Step runs one optimizer step: every micro-batch of this rank's slice of
// the global batch forward and backward, the gradient all-reduce, clipping,
// the learning rate of the schedule and AdamW. It returns ErrDone when the
// stage is done.
func (r *Run) Step(ctx context.Context) (Progress, error) {
	if r.Done() {
		return Progress{}, ErrDone
	}
	start := r.now()
	var comm time.Duration
	st := r.stage
	if r.sp != nil {
		return r.stepSeqParallel(ctx, start)
	}
	rows, err := r.data.rankRows(ctx, r.builder, r.samples, r.job.Rank, r.job.World, st.GlobalBatch)
	if err != nil {
		return Progress{}, fmt.Errorf("trainer: step %d: %w", r.step+1, err)
	}
	prog := Progress{Stage: st.Index, StageName: st.Name, Terms: map[string]float64{}, DataWait: r.now().Sub(start)}
	for _, rw := range rows {
		prog.SampleIDs = append(prog.SampleIDs, rw.ID)
	}
	// Micro-batches of MicroBatch samples (packed within each when the
	// stage packs) and their share of the global normaliser.
	var mbs []micro
	local := 0
	rankFirst, _ := shard.RankSlice(st.GlobalBatch, r.job.Rank, r.job.World)
	for i := 0; i < len(rows); i += st.MicroBatch {
		m := micro{rows: rows[i:min(i+st.MicroBatch, len(rows))], first: rankFirst + i}
		if st.Spec.Pack {
			m.rows = packRows(m.rows, st.MaxSeqLen)
		}
		for _, rw := range m.rows {
			if st.Spec.Normaliser == PerToken {
				m.count += trainedTokens(rw)
			} else {
				m.count += max(1, rw.N)
			}
		}
		local += m.count
		mbs = append(mbs, m)
	}
	total := float64(st.GlobalBatch)
	if st.Spec.Normaliser == PerToken {
		total = float64(local)
		if r.job.World > 1 {
			buf := []float32{float32(local)}
			t0 := r.now()
			if err := r.job.Comm.AllReduce(ctx, buf, collective.Sum); err != nil {
				return Progress{}, fmt.Errorf("trainer: step %d: token count: %w", r.step+1, err)
			}
			comm += r.now().Sub(t0)
			total = float64(buf[0])
		}
	}
	if total <= 0 {
		return Progress{}, fmt.Errorf("trainer: step %d: the global batch has no trained token", r.step+1)
	}
	r.clearGrads()
	if !r.dev.IsHost() { // after clearGrads: the gradients start empty on the device
		r.moveParams(r.dev)
		defer r.moveParams(kernels.Host) // also when the step fails
	}
	overlap := r.reduce != nil && !r.noOverlap && r.dev.IsHost()
	var lossSum float64
	termN := map[string]int{}
	last := -1 // the last micro-batch with a loss: its backward overlaps the all-reduce
	for k, m := range mbs {
		if m.count > 0 {
			last = k
		}
	}
	// BLIP-2 stage 1 with gradient accumulation: GradCache's first pass
	// contrasts the whole global batch before any backward (group.go).
	var groups []*models.Group
	var batches []*models.Batch // assembled for GradCache's first pass
	if r.contrastAcc && len(mbs) > 1 && !r.noGradCache {
		batches = make([]*models.Batch, len(mbs))
		for k, m := range mbs {
			if batches[k], err = r.assemble(m); err != nil {
				return Progress{}, fmt.Errorf("trainer: step %d: %w", r.step+1, err)
			}
		}
		gg := &gatherGroup{ctx: ctx, comm: r.job.Comm, now: r.now, wait: &comm, rank: r.job.Rank, world: r.job.World}
		err = catchStep(func() (err error) {
			groups, err = gg.contrast(r.model.(contrastive), batches, stepSeed(seed(r.job.Manifest), r.step))
			return err
		})
		if err != nil {
			return Progress{}, fmt.Errorf("trainer: step %d: BLIP-2 global-batch contrast: %w", r.step+1, err)
		}
		for k := range batches {
			batches[k].Group = groups[k]
		}
	}
	for k, m := range mbs {
		m.weight = float64(m.count) / total
		if m.weight == 0 {
			continue
		}
		var b *models.Batch
		if groups != nil {
			b = batches[k]
		} else if b, err = r.assemble(m); err != nil {
			return Progress{}, fmt.Errorf("trainer: step %d: %w", r.step+1, err)
		}
		for _, rw := range m.rows {
			prog.Tokens += int64(len(rw.Tokens)) + int64(len(rw.Images)*max(0, r.builder.imagePositions()-1))
		}
		tp := kernels.NewTape()
		var out models.Output
		err = catchStep(func() error {
			if r.groupNeg && groups == nil {
				gg := &gatherGroup{ctx: ctx, comm: r.job.Comm, now: r.now, wait: &comm, rank: r.job.Rank, world: r.job.World}
				if k == last && overlap {
					// The gathers' backward all-reduces run inside this
					// backward pass; the buckets wait for them, so that
					// every rank issues its collectives in one order.
					gg.hold, gg.release = r.reduce.holdBuckets, r.reduce.releaseBuckets
				}
				b.Group = gg.group(b.Tokens, b.ImageKeys, stepSeed(seed(r.job.Manifest), r.step))
			}
			var err error
			if out, err = r.model.Forward(tp, b); err != nil {
				return err
			}
			loss := tp.Scale(out.Loss, float32(m.weight))
			if k == last && overlap {
				// Buckets leave as their parameters' gradients become
				// final; earlier micro-batches only accumulate.
				r.reduce.begin(ctx)
				tp.BackwardWithHook(loss, r.reduce.ready)
			} else {
				tp.Backward(loss)
			}
			return nil
		})
		if err != nil {
			if r.reduce != nil {
				r.reduce.abort()
			}
			return Progress{}, fmt.Errorf("trainer: step %d: micro-batch %d (samples %s): %w", r.step+1, k, idList(m.rows), err)
		}
		lossSum += m.weight * float64(out.Loss.Item())
		for name, v := range out.Terms {
			if name != "loss" {
				prog.Terms[name] += float64(v)
				termN[name]++
			}
		}
	}
	for name := range prog.Terms {
		prog.Terms[name] /= float64(termN[name])
	}
	r.moveParams(kernels.Host) // the all-reduce, clipping and the optimizer run on the host
	return r.apply(ctx, prog, lossSum, comm, start)
}

// apply finishes a step whose gradients are accumulated: the all-reduce,
// clipping, the schedule's learning rate, AdamW, and the progress report.
func (r *Run) apply(ctx context.Context, prog Progress, lossSum float64, comm time.Duration, start time.Time) (Progress, error) {
	st := r.stage
	stageStep := r.step - st.Start
	if r.reduce != nil {
		// Only the wait that backward did not hide counts as
		// communication time.
		t0 := r.now()
		if err := r.reduce.finish(ctx, &lossSum); err != nil {
			return Progress{}, fmt.Errorf("trainer: step %d: gradient all-reduce: %w", r.step+1, err)
		}
		comm += r.now().Sub(t0)
	}
	if r.zero != nil {
		r.zero.bind()
	}
	switch {
	case r.zero != nil && r.zero.level >= 2:
		// Each rank holds only its chunks of the reduced gradients.
		t0 := r.now()
		norm, err := r.zero.clip(ctx, r.clip)
		comm += r.now().Sub(t0)
		if err != nil {
			return Progress{}, fmt.Errorf("trainer: step %d: %w", r.step+1, err)
		}
		prog.GradNorm = norm
	case r.clip > 0:
		norm, err := kernels.ClipGradNorm(r.params, float32(r.clip))
		if err != nil {
			return Progress{}, fmt.Errorf("trainer: step %d: %w", r.step+1, err)
		}
		prog.GradNorm = float64(norm)
	default:
		prog.GradNorm = gradNorm(r.params)
	}
	lr := r.sched.LR(stageStep)
	r.opt.Config.LR = float32(lr)
	r.opt.Step()
	if r.zero != nil {
		t0 := r.now()
		if err := r.zero.gatherParams(ctx); err != nil {
			return Progress{}, fmt.Errorf("trainer: step %d: %w", r.step+1, err)
		}
		comm += r.now().Sub(t0)
	}
	r.step++
	r.samples += int64(st.GlobalBatch)

	prog.Step, prog.StageStep, prog.Samples, prog.LR, prog.Loss = r.step, r.step-st.Start, r.samples, lr, lossSum
	prog.StepTime, prog.CommWait = r.now().Sub(start), comm
	if s := prog.StepTime.Seconds(); s > 0 {
		prog.TokensPerSec = float64(prog.Tokens) / s
	}
	r.log.Debug("trainer: step", "stage", st.Name, "step", r.step, "loss", prog.Loss, "lr", lr, "grad_norm", prog.GradNorm,
		"tokens_per_s", prog.TokensPerSec, "step_time", prog.StepTime, "comm_wait", comm, "data_wait", prog.DataWait)
	ev, err := r.periodicEval(ctx)
	if err != nil {
		return Progress{}, fmt.Errorf("trainer: step %d: eval: %w", r.step, err)
	}
	prog.Eval = ev
	return prog, nil
}

// stepSeqParallel is Step for sequence-parallel stages: every rank reads
// the whole global batch (rank 0 reports its sample ids), packs it into
// rows, and runs each row across the ring, holding a zigzag share of its
// tokens; the per-rank gradients of the row's loss sum to the gradient of
// the whole row, so the usual all-reduce finishes the step.
func (r *Run) stepSeqParallel(ctx context.Context, start time.Time) (Progress, error) {
	st := r.stage
	rows, err := r.data.rankRows(ctx, r.builder, r.samples, 0, 1, st.GlobalBatch)
	if err != nil {
		return Progress{}, fmt.Errorf("trainer: step %d: %w", r.step+1, err)
	}
	prog := Progress{Stage: st.Index, StageName: st.Name, Terms: map[string]float64{}, DataWait: r.now().Sub(start)}
	if r.job.Rank == 0 {
		for _, rw := range rows {
			prog.SampleIDs = append(prog.SampleIDs, rw.ID)
		}
	}
	var packed []row
	for i := 0; i < len(rows); i += st.MicroBatch {
		packed = append(packed, packRows(rows[i:min(i+st.MicroBatch, len(rows))], st.MaxSeqLen)...)
	}
	total := 0
	for _, rw := range packed {
		total += trainedTokens(rw)
	}
	if total == 0 {
		return Progress{}, fmt.Errorf("trainer: step %d: the global batch has no trained token", r.step+1)
	}
	wText := st.Losses["ce_text"] / float64(total)
	r.clearGrads()
	var lossSum float64
	var comm time.Duration
	for k, rw := range packed {
		sr := padRow(spRow{Tokens: rw.Tokens, Vision: rw.Vision, Loss: rw.Loss, Seg: rw.segments}, 2*r.job.World, r.cfg.Special.Pad)
		var part float64
		var n int
		ferr := kernels.Catch(func() { part, n, err = r.sp.step(ctx, sr, wText, 0) })
		if ferr != nil {
			err = ferr
		}
		if err != nil {
			return Progress{}, fmt.Errorf("trainer: step %d: packed row %d (samples %s): %w", r.step+1, k, rw.ID, err)
		}
		lossSum += part
		prog.Tokens += int64(n)
	}
	comm, r.sp.wait = r.sp.wait, 0
	p, err := r.apply(ctx, prog, lossSum, comm, start)
	if err == nil && st.Losses["ce_text"] > 0 {
		p.Terms["ce_text"] = p.Loss / st.Losses["ce_text"]
	}
	return p, err
}

// The gradient all-reduce (gradReduce, overlap.go) sums the gradients
// and the weighted loss over the ranks. A parameter no backward pass
// reached on any rank (LWM's vision head in a text stage, a projector in a
// text-only batch) keeps a nil gradient, so AdamW leaves it and its
// moments alone, as PyTorch does with grad None; presence flags travel
// with the gradients to decide it globally.

// clearGrads starts a step: trainable gradients are dropped (not zeroed),
// so that a parameter no backward pass reaches stays without one.
func (r *Run) clearGrads() {
	for _, p := range r.params {
		p.Grad = nil
	}
}

func gradNorm(ps []*kernels.Tensor) float64 {
	var s float64
	for _, p := range ps {
		for _, g := range p.Grad {
			s += float64(g) * float64(g)
		}
	}
	return math.Sqrt(s)
}

// stepSeed drives a step's random choices (ITM negatives, dropout): a
// pure function of the seed and the step, the same on every rank and
// micro-batch; the models derive each row's choices from it and the row's
// index in the global batch.
func stepSeed(s uint64, step int64) uint64 {
	r := rand.New(rand.NewPCG(s, uint64(step)<<20))
	return r.Uint64()
}

func sampleIDs(rows []row) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.ID)
	}
	return out
}

func idList(rows []row) string {
	ids := sampleIDs(rows)
	if len(ids) > 4 {
		return fmt.Sprintf("%v…", ids[:4])
	}
	return fmt.Sprint(ids)
}
