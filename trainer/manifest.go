package trainer

import (
	"fmt"
	"strings"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/shard"
)

// DatasetName is the dataset name ExampleManifest gives a sample kind
// ("image-text", "interleaved", …: the kind itself).
func DatasetName(k shard.Kind) string { return string(k) }

// Kinds returns every sample kind the recipe's stages read, in stage order.
func (r *Recipe) Kinds() []shard.Kind {
	var out []shard.Kind
	seen := map[shard.Kind]bool{}
	for _, s := range r.Stages {
		for _, k := range s.Kinds {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	return out
}

// ExampleManifest returns a defaulted, validated manifest that runs every
// stage of a recipe: one dataset per sample kind the recipe reads (named
// DatasetName(kind), at uri(kind)), each stage mixing the kinds it reads
// with the recipe's weights, steps optimizer steps per stage at a global
// batch of batch samples. `loom dev` and the tests build their jobs with it.
func ExampleManifest(recipe, size string, uri func(shard.Kind) string, steps int64, batch int) (*api.Manifest, error) {
	r, err := Lookup(recipe)
	if err != nil {
		return nil, err
	}
	m := &api.Manifest{Name: strings.ReplaceAll(recipe, "_", "-") + "-" + size, Recipe: recipe, Model: api.Model{Size: size},
		GlobalBatch: batch, Seed: 1}
	for _, k := range r.Kinds() {
		m.Datasets = append(m.Datasets, api.Dataset{Name: DatasetName(k), URI: uri(k), Weight: 1})
	}
	for _, s := range r.Stages {
		st := api.Stage{Name: s.Name, Steps: steps, Datasets: map[string]float64{}}
		for _, k := range s.Kinds {
			w := 1.0
			if v, ok := s.Mix[k]; ok {
				w = v
			}
			st.Datasets[DatasetName(k)] = w
		}
		m.Stages = append(m.Stages, st)
	}
	// The parts the recipe starts from another recipe's job: that
	// recipe's example job at this size and steps, at the end of the
	// stage (every stage's final checkpoint is kept).
	for _, sf := range r.StartsFrom {
		src, err := ExampleManifest(sf.Recipe, size, uri, steps, batch)
		if err != nil {
			return nil, err
		}
		var end int64
		for i, s := range src.Stages {
			if s.Name == sf.Stage {
				end = src.StageEnd(i)
			}
		}
		if end == 0 {
			return nil, fmt.Errorf("trainer: recipe %s starts from stage %q of %s, which has no such stage", recipe, sf.Stage, sf.Recipe)
		}
		if m.Init == nil {
			m.Init = map[string]api.InitSource{}
		}
		for _, p := range sf.Parts {
			m.Init[p] = api.InitSource{Job: src.Name, Step: end}
		}
	}
	m.Default()
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("trainer: example manifest for %s: %w", recipe, err)
	}
	return m, nil
}
