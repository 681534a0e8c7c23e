package trainer

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/shard"
)

// Recipe is a staged training recipe of one model family.
type Recipe struct {
	// Name is the manifest's recipe name (api.Recipes).
	Name string
	// Family is the model family every stage builds.
	Family models.Family
	// Source cites where the recipe comes from.
	Source string
	// Stages are the recipe's stages in order. A manifest may run fewer
	// (or more, repeating the last) stages: its stage i uses recipe
	// stage min(i, len-1), unless the manifest stage's name equals a recipe
	// stage's name, which then wins.
	Stages []StageSpec
	// Aliases maps module names a manifest's trainable list may use to
	// parameter patterns (e.g. BLIP-2 "proj" → "llm_proj").
	Aliases map[string][]string
	// StartsFrom are the parts the paper takes from another recipe's
	// trained model (InstructBLIP's Q-Former from BLIP-2's first stage):
	// ExampleManifest's init block names that recipe's example job.
	StartsFrom []StartFrom
}

// StartFrom says that Parts (api.InitParts) start from the final
// checkpoint of stage Stage of a Recipe job.
type StartFrom struct {
	Recipe, Stage string
	Parts         []string
}

// Normaliser says what a stage's loss is averaged over, so that
// micro-batches and ranks can be weighted into the global batch's loss.
type Normaliser int

const (
	// PerToken: the model's loss is the mean over trained tokens.
	PerToken Normaliser = iota
	// PerSample: the loss is a mean over samples (contrastive and matching
	// losses, LWM's per-modality means); micro-batches are weighted by
	// their number of samples.
	PerSample
)

// StageSpec is one stage of a recipe.
type StageSpec struct {
	Name   string
	Source string // citation (../shared/research/recipes.md section and tags)
	// ModelStage is BLIP-2's model stage (1: Q-Former with ITC/ITM/ITG,
	// 2: Q-Former into the LLM); 0 for the other families.
	ModelStage int
	// Trainable lists the parameter patterns that train; everything else
	// is frozen. nil keeps the model's own freezing.
	Trainable []string
	// Frozen is applied after Trainable (e.g. Qwen-VL stage 3 freezes the
	// ViT but not its attention pool).
	Frozen []string
	// InitOnly and InitSkip restrict what is loaded from the previous
	// stage's checkpoint (nn.LoadOptions); both nil loads every tensor the
	// model has.
	InitOnly, InitSkip []string
	// Kinds are the sample kinds the stage reads.
	Kinds []shard.Kind
	// Mix are the recipe's mixture weights per sample kind when a
	// manifest is generated for it (ExampleManifest); a kind not listed
	// weighs 1. E.g. LWM's 16% pure text, VILA's ≈1:1 interleaved:pairs.
	Mix map[shard.Kind]float64
	// Format turns samples into rows.
	Format Format
	// ImageFactor scales the preset's image size (0 means 1): Qwen-VL
	// trains stage 1 at half the resolution of stages 2-3 (224 → 448).
	ImageFactor float64
	// MaxSeqLen is the context length in tokens at the tiny and small
	// sizes (0: the manifest's max_seq_len); the paper's is in Source.
	MaxSeqLen int
	// RopeTheta is the RoPE base (0: the preset's).
	RopeTheta float64
	// RingAttention runs the stage sequence-parallel when the world has
	// more than one rank: every rank holds a zigzag share of each packed
	// row and attention is ring attention over the ranks (LWM's long text
	// stages, whose paper meshes have sp > 1). Text-only, per-token stages.
	RingAttention bool
	// Pack packs several samples into each row of MaxSeqLen tokens with
	// block-diagonal attention (LWM masked sequence packing).
	Pack bool
	// Losses are the loss terms the stage trains with the paper's weights
	// (models.Output.Terms names; the model's loss is Σ weight·term). A
	// manifest may reweight them (Stage.Losses).
	Losses map[string]float64
	// Normaliser is what the loss averages over.
	Normaliser Normaliser
	// WarmupRatio sets the warmup as a share of the stage's steps when
	// the manifest does not set warmup_steps (the papers' warmups are in
	// steps of much longer runs: BLIP-2 2k of 250k, LLaVA 3%).
	WarmupRatio float64
	// Augment turns on random resized crops and flips (BLIP-2).
	Augment bool
	// Hyper are the recipe's hyperparameters for the stage (LR, schedule,
	// warmup, weight decay, betas); the manifest's overrides win.
	Hyper api.Hyperparameters
	// Eval is the evaluation that fits the stage.
	Eval EvalKind
}

// EvalKind names an evaluation.
type EvalKind string

// The evaluations.
const (
	EvalRetrieval EvalKind = "retrieval" // image-text retrieval accuracy (contrastive stages)
	EvalCaption   EvalKind = "caption"   // caption loss and exact match (generative stages)
)

var recipes = map[string]*Recipe{}

func register(r *Recipe) { recipes[r.Name] = r }

// Lookup returns the recipe called name.
func Lookup(name string) (*Recipe, error) {
	r, ok := recipes[name]
	if !ok {
		names := make([]string, 0, len(recipes))
		for n := range recipes {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("trainer: recipe %q: unknown, want one of %s", name, strings.Join(names, ", "))
	}
	return r, nil
}

// Recipes returns every registered recipe, by name.
func Recipes() []*Recipe {
	out := make([]*Recipe, 0, len(recipes))
	for _, r := range recipes {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Spec returns the recipe stage that manifest stage i runs.
func (r *Recipe) Spec(m *api.Manifest, i int) StageSpec {
	name := m.Stages[i].Name
	for _, s := range r.Stages {
		if s.Name == name {
			return s
		}
	}
	return r.Stages[min(i, len(r.Stages)-1)]
}

// modelSize maps a manifest model size to a models preset.
func modelSize(size string) (string, error) {
	switch size {
	case "tiny", "small":
		return size, nil
	case "large":
		return "paper", nil
	}
	return "", fmt.Errorf("model.size: %q has no preset in models/ (tiny, small, large = the paper size)", size)
}

// f64, str build hyperparameter pointers for recipe tables.
func f64(v float64) *float64 { return &v }
func str(v string) *string   { return &v }

// Stage is a manifest stage resolved against its recipe: everything NewRun
// needs to build the model and the data stream.
type Stage struct {
	Index       int
	Name        string
	Spec        StageSpec
	Recipe      *Recipe
	Hyper       api.Hyperparameters // effective: built-ins < recipe < changed manifest defaults < stage overrides
	GlobalBatch int
	MicroBatch  int
	Steps       int64 // steps of this stage
	Start       int64 // global step at which the stage starts
	MaxSeqLen   int
	ImageSize   int
	Trainable   []string // patterns
	// Losses are the effective loss weights: the recipe stage's terms,
	// reweighted by the manifest (defaults.losses, then the stage's
	// overrides.losses); the model computes Σ weight·term.
	Losses map[string]float64
	// InitFrom is the index of the stage whose final checkpoint
	// initialises this one (-1: none, start from the seed).
	InitFrom int
}

// Resolve combines manifest stage i with its recipe. Hyperparameters are
// layered: the built-in defaults, then the recipe's values for the stage,
// then the manifest's defaults where they differ from the built-in ones
// (a defaulted manifest cannot tell "unset" from "set to the default"),
// then the stage's overrides.
func Resolve(m *api.Manifest, i int) (*Stage, error) {
	if i < 0 || i >= len(m.Stages) {
		return nil, fmt.Errorf("trainer: stage %d: the manifest has %d stages", i, len(m.Stages))
	}
	r, err := Lookup(m.Recipe)
	if err != nil {
		return nil, err
	}
	spec := r.Spec(m, i)
	ms := m.Stages[i]
	builtin := builtinHyper()
	h := builtin.Merge(spec.Hyper).Merge(changed(m.Defaults, builtin)).Merge(ms.Overrides)
	st := &Stage{Index: i, Name: ms.Name, Spec: spec, Recipe: r, Hyper: h,
		GlobalBatch: m.StageGlobalBatch(i), Steps: ms.Steps, Start: m.StageEnd(i) - ms.Steps, InitFrom: i - 1}
	if ms.InitFrom != "" {
		st.InitFrom = -1
		for j := 0; j < i; j++ {
			if m.Stages[j].Name == ms.InitFrom {
				st.InitFrom = j
			}
		}
		if st.InitFrom < 0 {
			return nil, fmt.Errorf("stages[%d].init_from: %q is not an earlier stage", i, ms.InitFrom)
		}
	}
	if st.GlobalBatch <= 0 {
		return nil, fmt.Errorf("stages[%d].global_batch: %d, want > 0", i, st.GlobalBatch)
	}
	st.MicroBatch = st.GlobalBatch
	if h.MicroBatch != nil {
		st.MicroBatch = *h.MicroBatch
	}
	st.MaxSeqLen = *h.MaxSeqLen
	if spec.MaxSeqLen > 0 && (ms.Overrides.MaxSeqLen == nil) && *m.Defaults.MaxSeqLen == *builtin.MaxSeqLen {
		st.MaxSeqLen = spec.MaxSeqLen
	}
	if ms.Overrides.ImageSize != nil || *m.Defaults.ImageSize != *builtin.ImageSize {
		st.ImageSize = *h.ImageSize
	}
	// Trainable: the manifest's list (module names, with the recipe's
	// aliases) replaces the recipe's.
	st.Trainable = spec.Trainable
	if h.Trainable != nil { // only the manifest sets it (recipes use Spec.Trainable)
		st.Trainable = nil
		for _, mod := range h.Trainable {
			if a, ok := r.Aliases[mod]; ok {
				st.Trainable = append(st.Trainable, a...)
			} else {
				st.Trainable = append(st.Trainable, mod)
			}
		}
	}
	if st.Losses, err = stageLosses(m, i, r, spec); err != nil {
		return nil, err
	}
	return st, nil
}

// stageLosses is stage i's loss terms with their weights: the recipe
// stage's, reweighted by the manifest's defaults (for the terms this stage
// computes; each name must be a term of some stage of the manifest) and
// then by the stage's overrides (each name must be a term of this stage).
// Weights are finite and >= 0, and not all 0; 0 removes a term.
func stageLosses(m *api.Manifest, i int, r *Recipe, spec StageSpec) (map[string]float64, error) {
	out := make(map[string]float64, len(spec.Losses))
	for k, v := range spec.Losses {
		out[k] = v
	}
	set := func(field, k string, w float64) error {
		if !(w >= 0) || math.IsInf(w, 0) {
			return fmt.Errorf("%s.%s: %v: want a finite weight >= 0", field, k, w)
		}
		out[k] = w
		return nil
	}
	for _, k := range sortedKeys(m.Defaults.Losses) {
		if _, ok := spec.Losses[k]; !ok {
			some := false
			for j := range m.Stages {
				_, in := r.Spec(m, j).Losses[k]
				some = some || in
			}
			if !some {
				return nil, fmt.Errorf("defaults.losses.%s: no stage of this %s manifest computes it", k, r.Name)
			}
			continue
		}
		if err := set("defaults.losses", k, m.Defaults.Losses[k]); err != nil {
			return nil, err
		}
	}
	field := fmt.Sprintf("stages[%d].overrides.losses", i)
	for _, k := range sortedKeys(m.Stages[i].Overrides.Losses) {
		if _, ok := spec.Losses[k]; !ok {
			return nil, fmt.Errorf("%s.%s: stage %q of recipe %s computes %s", field, k, spec.Name, r.Name, lossList(spec.Losses))
		}
		if err := set(field, k, m.Stages[i].Overrides.Losses[k]); err != nil {
			return nil, err
		}
	}
	for _, w := range out {
		if w > 0 {
			return out, nil
		}
	}
	return nil, fmt.Errorf("%s: every loss term of stage %q has weight 0 (%s)", field, spec.Name, lossList(out))
}

func lossList(l map[string]float64) string {
	var parts []string
	for _, k := range sortedKeys(l) {
		parts = append(parts, fmt.Sprintf("%s×%v", k, l[k]))
	}
	return strings.Join(parts, " + ")
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// builtinHyper are api's built-in defaults (what Manifest.Default fills in).
func builtinHyper() api.Hyperparameters {
	var m api.Manifest
	m.Default()
	return m.Defaults
}

// changed returns the fields of h that differ from base.
func changed(h, base api.Hyperparameters) api.Hyperparameters {
	var o api.Hyperparameters
	diff := func(a, b *float64) *float64 {
		if a != nil && (b == nil || *a != *b) {
			return a
		}
		return nil
	}
	o.LR, o.MinLR, o.WeightDecay = diff(h.LR, base.LR), diff(h.MinLR, base.MinLR), diff(h.WeightDecay, base.WeightDecay)
	o.Beta1, o.Beta2, o.Eps = diff(h.Beta1, base.Beta1), diff(h.Beta2, base.Beta2), diff(h.Eps, base.Eps)
	o.GradClip, o.RopeTheta = diff(h.GradClip, base.GradClip), diff(h.RopeTheta, base.RopeTheta)
	o.LabelSmoothing = diff(h.LabelSmoothing, base.LabelSmoothing)
	if h.WarmupSteps != nil && (base.WarmupSteps == nil || *h.WarmupSteps != *base.WarmupSteps) {
		o.WarmupSteps = h.WarmupSteps
	}
	if h.Schedule != nil && (base.Schedule == nil || *h.Schedule != *base.Schedule) {
		o.Schedule = h.Schedule
	}
	if h.MicroBatch != nil {
		o.MicroBatch = h.MicroBatch
	}
	if h.MaxSeqLen != nil && (base.MaxSeqLen == nil || *h.MaxSeqLen != *base.MaxSeqLen) {
		o.MaxSeqLen = h.MaxSeqLen
	}
	if h.ImageSize != nil && (base.ImageSize == nil || *h.ImageSize != *base.ImageSize) {
		o.ImageSize = h.ImageSize
	}
	o.Trainable, o.Losses = h.Trainable, h.Losses
	return o
}
