package trainer

import (
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/shard"
)

var updateExamples = flag.Bool("update-examples", false, "rewrite examples/manifests/*.yaml from ExampleManifest")

// TestCheckManifest: what a worker would refuse is refused before
// submit, each problem naming its line and field (issue 17 part 6).
func TestCheckManifest(t *testing.T) {
	const head = "name: j\nrecipe: blip2\nmodel: {size: tiny}\ndatasets: [{name: image-text, uri: \"s3://data/it\"}]\nglobal_batch: 8\nstages:\n"
	for _, tc := range []struct {
		name, stages string
		want         []string // file:line: path: message parts
	}{
		{"ok", "  - {name: representation, steps: 4}\n  - {name: generative, steps: 4}\n", nil},
		{"misspelled trainable", "  - name: representation\n    steps: 4\n    overrides:\n      trainable: [ln_vison]\n",
			[]string{"m.yaml:10: stages[0].overrides.trainable", `"ln_vison" matches no parameter`, "ln_vision"}},
		{"unknown loss", "  - name: representation\n    steps: 4\n    overrides:\n      losses: {foo: 1}\n",
			[]string{"m.yaml:10: stages[0].overrides.losses.foo", "computes itc"}},
		{"unknown stage name", "  - {name: representaton, steps: 4}\n",
			[]string{"m.yaml:7: stages[0].name", `"representaton" is not a stage of recipe blip2 (representation, generative)`}},
	} {
		m, err := api.ParseManifest("m.yaml", []byte(head+tc.stages))
		if err != nil {
			t.Fatalf("%s: parse: %v", tc.name, err)
		}
		plans, err := CheckManifest(m)
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			if len(plans) != len(m.Stages) || plans[0].Trainable == 0 || plans[0].Trainable >= plans[0].Params {
				t.Errorf("%s: plans %+v; want one per stage with a trainable share", tc.name, plans)
			}
			continue
		}
		var me *api.ManifestError
		if !errors.As(err, &me) {
			t.Fatalf("%s: %v, want an *api.ManifestError", tc.name, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v\nlacks %q", tc.name, err, w)
			}
		}
	}
}

// TestModelSizesHavePresets: every size a manifest may name maps to a
// models preset, so the api list and models' presets cannot drift.
func TestModelSizesHavePresets(t *testing.T) {
	for _, s := range api.ModelSizes {
		if _, err := modelSize(s); err != nil {
			t.Errorf("api.ModelSizes has %q: %v", s, err)
		}
	}
}

// TestExampleManifests: examples/manifests has one manifest per recipe,
// as ExampleManifest writes it, and each passes CheckManifest. Run with
// -update-examples to rewrite them.
func TestExampleManifests(t *testing.T) {
	dir := filepath.Join("..", "examples", "manifests")
	var names []string
	for n := range recipes {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		m, err := ExampleManifest(name, "small", func(k shard.Kind) string { return "s3://my-bucket/datasets/" + string(k) }, 1000, 64)
		if err != nil {
			t.Fatal(err)
		}
		y, err := m.Normalized()
		if err != nil {
			t.Fatal(err)
		}
		want := "# " + name + ": every stage of the recipe at the small size (trainer.ExampleManifest).\n" +
			"# Check it with `loom submit --dry-run " + filepath.ToSlash(filepath.Join("examples", "manifests", name+".yaml")) + "`.\n" + string(y)
		path := filepath.Join(dir, name+".yaml")
		if *updateExamples {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("recipe %s has no example manifest: %v (go test ./trainer -run TestExampleManifests -update-examples)", name, err)
			continue
		}
		if string(got) != want {
			t.Errorf("%s is not what ExampleManifest writes (go test ./trainer -run TestExampleManifests -update-examples)", path)
		}
		pm, err := api.ParseManifest(path, got)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if _, err := CheckManifest(pm); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}

// TestCheckManifestLabelSmoothing: the plan (loom submit --dry-run) shows
// the label smoothing the stage's losses really use: BLIP-2's
// representation stage its 0.1 (or the override), every LM stage 0, with a
// note when the manifest asks an LM stage for smoothing it will not apply.
func TestCheckManifestLabelSmoothing(t *testing.T) {
	const head = "name: j\nrecipe: blip2\nmodel: {size: tiny}\ndatasets: [{name: image-text, uri: \"s3://data/it\"}]\nglobal_batch: 8\n"
	for _, tc := range []struct {
		name, rest string
		want       []float64
		note       []string // per stage: a part of the note ("" none)
	}{
		{"recipe", "stages: [{name: representation, steps: 4}, {name: generative, steps: 4}]\n", []float64{0.1, 0}, []string{"", ""}},
		{"overrides", "stages:\n  - {name: representation, steps: 4, overrides: {label_smoothing: 0.2}}\n  - {name: generative, steps: 4, overrides: {label_smoothing: 0.3}}\n",
			[]float64{0.2, 0}, []string{"", "label_smoothing 0.3 does not apply: this stage's losses (lm×1) use no label smoothing"}},
		{"defaults", "defaults: {label_smoothing: 0.05}\nstages: [{name: representation, steps: 4}, {name: generative, steps: 4}]\n",
			[]float64{0.05, 0}, []string{"", "label_smoothing 0.05 does not apply"}},
		{"defaults at the built-in", "defaults: {label_smoothing: 0}\nstages: [{name: representation, steps: 4}, {name: generative, steps: 4}]\n",
			[]float64{0.1, 0}, []string{"defaults.label_smoothing 0 equals the built-in default, so the recipe's 0.1 stays; set it in stages[0].overrides", ""}},
	} {
		m, err := api.ParseManifest("m.yaml", []byte(head+tc.rest))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		plans, err := CheckManifest(m)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for i, p := range plans {
			if math.Abs(p.LabelSmoothing-tc.want[i]) > 1e-7 {
				t.Errorf("%s: stage %s: label smoothing %v, want %v", tc.name, p.Name, p.LabelSmoothing, tc.want[i])
			}
			if (tc.note[i] == "") != (p.LabelSmoothingNote == "") || !strings.Contains(p.LabelSmoothingNote, tc.note[i]) {
				t.Errorf("%s: stage %s: note %q, want %q", tc.name, p.Name, p.LabelSmoothingNote, tc.note[i])
			}
		}
	}
	// Every LM recipe's stages show 0.
	for _, name := range []string{"instructblip", "llava", "vila", "qwen-vl", "lwm"} {
		m := testManifest(t, name, 2, 4)
		plans, err := CheckManifest(m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range plans {
			if p.LabelSmoothing != 0 || p.LabelSmoothingNote != "" {
				t.Errorf("%s stage %s: label smoothing %v (%q), want 0: its LM loss has none", name, p.Name, p.LabelSmoothing, p.LabelSmoothingNote)
			}
		}
	}
}
