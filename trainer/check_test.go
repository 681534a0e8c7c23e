package trainer

import (
	"errors"
	"flag"
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
