package trainer

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/models/tokenizer"
)

// checkBuildLimit is the largest model (in parameters) CheckManifest
// builds to check trainable patterns against its real parameter tree; a
// larger one is checked by the worker when it builds the stage.
const checkBuildLimit = 64 << 20

// StagePlan is what a stage will run with, as CheckManifest resolved it
// (the recipe's values with the manifest's on top): what `loom submit
// --dry-run` prints.
type StagePlan struct {
	Name               string
	RecipeStage        string // the recipe stage it runs
	Steps              int64
	GlobalBatch        int
	LR, MinLR          float64
	Beta1, Beta2, Eps  float64
	WeightDecay        float64
	Schedule           string
	Warmup             int64
	ImageSize          int // pixels the model sees
	Context            int // tokens per row
	Losses             map[string]float64
	Trainable, Params  int    // parameter counts; 0 when not built
	NotBuilt           string // why the counts are missing
	TrainablePatterns  []string
	LabelSmoothing     float64
	LabelSmoothingNote string
}

// CheckManifest checks m against its recipe as the workers will run it,
// before any worker does: the model size has a preset; every stage name
// is one of the recipe's stages; the loss names and weights resolve; the
// trainable patterns match parameters of the stage's model (built when it
// has at most 64 Mi parameters; larger models are checked at the
// worker); the stage's model configuration is valid. Problems come back
// together as an *api.ManifestError whose entries name the file, line and
// field (api.Manifest.Where); the plans describe each stage that resolved.
// Init sources are not opened (their shapes are the worker's to check),
// so a stage whose shape comes from an init source's config is checked
// at the preset's shape.
func CheckManifest(m *api.Manifest) ([]StagePlan, error) {
	var errs []*api.FieldError
	add := func(path, format string, args ...any) { errs = append(errs, m.FieldErrorf(path, format, args...)) }
	r, err := Lookup(m.Recipe)
	if err != nil {
		add("recipe", "%v", strings.TrimPrefix(err.Error(), "trainer: "))
		return nil, &api.ManifestError{Errs: errs}
	}
	if _, err := modelSize(m.Model.Size); err != nil {
		add("model.size", "%q has no preset (want one of %s)", m.Model.Size, strings.Join(api.ModelSizes, ", "))
	}
	var names []string
	for _, s := range r.Stages {
		names = append(names, s.Name)
	}
	tok, err := tokenizer.NewBPE(nil, tokenizer.DefaultSpecial)
	if err != nil {
		return nil, err
	}
	var plans []StagePlan
	for i, ms := range m.Stages {
		at := fmt.Sprintf("stages[%d]", i)
		if !slices.Contains(names, ms.Name) {
			add(at+".name", "%q is not a stage of recipe %s (%s); by position it would run as %q: name the stage you mean",
				ms.Name, r.Name, strings.Join(names, ", "), r.Spec(m, i).Name)
		}
		st, err := Resolve(m, i)
		if err != nil {
			path, msg := splitFieldError(err, at)
			add(path, "%s", msg)
			continue
		}
		h := st.Hyper
		p := StagePlan{Name: st.Name, RecipeStage: st.Spec.Name, Steps: st.Steps, GlobalBatch: st.GlobalBatch,
			LR: *h.LR, MinLR: *h.MinLR, Beta1: *h.Beta1, Beta2: *h.Beta2, Eps: *h.Eps, WeightDecay: *h.WeightDecay,
			Schedule: *h.Schedule, Warmup: *h.WarmupSteps, Context: st.MaxSeqLen, Losses: st.Losses,
			TrainablePatterns: st.Trainable, LabelSmoothing: *h.LabelSmoothing}
		if st.Spec.WarmupRatio > 0 && !warmupSet(m, i) {
			p.Warmup = int64(st.Spec.WarmupRatio*float64(st.Steps) + 0.999999)
		}
		if _, err := modelSize(m.Model.Size); err != nil {
			plans = append(plans, p)
			continue
		}
		cfg, err := stageConfig(m, st, tok, nil)
		if err != nil {
			add(at, "the stage's model: %v", err)
			continue
		}
		// What the stage's losses really apply (the LM losses none, whatever
		// the manifest or the preset says).
		p.ImageSize, p.LabelSmoothing = cfg.ImageSize, float64(cfg.AppliedLabelSmoothing())
		asked := ms.Overrides.LabelSmoothing != nil || *m.Defaults.LabelSmoothing != *builtinHyper().LabelSmoothing
		switch {
		case p.LabelSmoothing == 0 && asked && *h.LabelSmoothing != 0:
			p.LabelSmoothingNote = fmt.Sprintf("label_smoothing %v does not apply: this stage's losses (%s) use no label smoothing (only BLIP-2's representation stage, ITC and ITG, does)",
				*h.LabelSmoothing, lossList(st.Losses))
		case p.LabelSmoothing != 0 && m.Explicit("defaults.label_smoothing") && *m.Defaults.LabelSmoothing == *builtinHyper().LabelSmoothing &&
			p.LabelSmoothing != *m.Defaults.LabelSmoothing:
			p.LabelSmoothingNote = fmt.Sprintf("defaults.label_smoothing %v equals the built-in default, so the recipe's %v stays; set it in %s.overrides to change it",
				*m.Defaults.LabelSmoothing, cfg.AppliedLabelSmoothing(), at)
		}
		if n := models.ParamCount(cfg); n > checkBuildLimit {
			p.NotBuilt = fmt.Sprintf("%d parameters: too large to build here; the worker checks the trainable patterns", n)
			plans = append(plans, p)
			continue
		}
		model, err := models.New(cfg, 1)
		if err != nil {
			add(at, "the stage's model: %v", err)
			continue
		}
		run := &Run{stage: st, model: model}
		if err := run.applyTrainable(); err != nil {
			path := at + ".overrides.trainable"
			if ms.Overrides.Trainable == nil && m.Defaults.Trainable != nil {
				path = "defaults.trainable"
			}
			_, msg := splitFieldError(err, path)
			add(path, "%s (the stage's model has %s)", msg, topModules(model))
			continue
		}
		p.Params = model.Params().Count()
		for _, t := range model.Params().Trainable() {
			p.Trainable += t.Size()
		}
		plans = append(plans, p)
	}
	if len(errs) > 0 {
		return plans, &api.ManifestError{Errs: errs}
	}
	return plans, nil
}

// fieldPathRE finds the manifest field path an error from Resolve starts
// with ("stages[0].overrides.losses.foo: ...").
var fieldPathRE = regexp.MustCompile(`^((?:defaults|stages\[\d+\])[A-Za-z0-9_.\[\]]*): (.*)$`)

// splitFieldError returns the manifest path err names (or def) and the
// rest of its message, without the "trainer: " prefixes.
func splitFieldError(err error, def string) (string, string) {
	msg := err.Error()
	for strings.HasPrefix(msg, "trainer: ") {
		msg = strings.TrimPrefix(msg, "trainer: ")
	}
	if m := fieldPathRE.FindStringSubmatch(msg); m != nil {
		return m[1], m[2]
	}
	return def, msg
}

// topModules lists the first two levels of a model's parameter names, so
// that a pattern that matches nothing can be corrected.
func topModules(m models.Model) string {
	seen := map[string]bool{}
	var out []string
	for _, n := range m.Params().Names() {
		parts := strings.SplitN(n, ".", 3)
		k := parts[0]
		if len(parts) > 2 {
			k += "." + parts[1]
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	if len(out) > 24 {
		out = append(out[:24], fmt.Sprintf("… %d more", len(out)-24))
	}
	return strings.Join(out, ", ")
}
