package api

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func TestParseManifestGolden(t *testing.T) {
	m, err := LoadManifest("testdata/blip2.yaml")
	if err != nil {
		t.Fatalf("LoadManifest(testdata/blip2.yaml): %v", err)
	}
	got, err := m.Normalized()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "blip2.normalized.yaml")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./api -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Normalized() of testdata/blip2.yaml:\n%s\nwant (%s):\n%s", got, golden, want)
	}
	// The normalised form parses back to the same manifest.
	m2, err := ParseManifest("normalized", got)
	if err != nil {
		t.Fatalf("ParseManifest(Normalized()): %v", err)
	}
	again, _ := m2.Normalized()
	if !bytes.Equal(again, got) {
		t.Errorf("normalised form is not a fixed point:\n%s\nvs\n%s", again, got)
	}
}

func TestManifestDerived(t *testing.T) {
	m, err := LoadManifest("testdata/blip2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.TotalSteps(), int64(3000); got != want {
		t.Errorf("TotalSteps() = %d, want %d", got, want)
	}
	for _, c := range []struct {
		step int64
		want int
	}{{0, 0}, {1999, 0}, {2000, 1}, {2999, 1}, {3000, 1}} {
		if got := m.StageAt(c.step); got != c.want {
			t.Errorf("StageAt(%d) = %d, want %d", c.step, got, c.want)
		}
	}
	if got, want := m.StageEnd(0), int64(2000); got != want {
		t.Errorf("StageEnd(0) = %d, want %d", got, want)
	}
	// 2..8 dividing both 256 and 128.
	if got, want := m.WorldSizes(), []int{2, 4, 8}; !equalInts(got, want) {
		t.Errorf("WorldSizes() = %v, want %v", got, want)
	}
	h := m.StageHyperparameters(1)
	if *h.LR != 5e-5 || *h.WarmupSteps != 200 || *h.Schedule != "cosine" {
		t.Errorf("StageHyperparameters(1) = lr %v warmup %v schedule %v, want 5e-05 200 cosine", *h.LR, *h.WarmupSteps, *h.Schedule)
	}
	if *m.StageHyperparameters(0).LR != 1e-4 {
		t.Errorf("StageHyperparameters(0).LR = %v, want 1e-4", *m.StageHyperparameters(0).LR)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

const minimal = `name: j
recipe: vila
model: {size: tiny}
datasets: [{name: d, uri: "s3://bkt/d"}]
global_batch: 8
stages: [{name: s, steps: 10}]
`

func TestParseManifestErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		yaml string
		want []string // substrings of the error, each must appear
	}{
		{"empty", "", []string{"t.yaml: the manifest is empty"}},
		{"not yaml", "name: [", []string{"not valid YAML"}},
		{"two documents", minimal + "---\nname: x\n", []string{"t.yaml:7: more than one YAML document"}},
		{"top level list", "- a\n", []string{"t.yaml:1: want a mapping, got a list"}},
		{"unknown field", minimal + "gpus: 8\n", []string{"t.yaml:7: gpus: unknown field; known fields here: checkpoint, datasets"}},
		{"unknown nested", strings.Replace(minimal, "size: tiny", "size: tiny, layers: 3", 1), []string{"t.yaml:3: model.layers: unknown field"}},
		{"unknown override", minimal + "defaults: {learning_rate: 1}\n", []string{"t.yaml:7: defaults.learning_rate: unknown field"}},
		{"duplicate", minimal + "name: k\n", []string{"t.yaml:7: name: duplicate field (first set on line 1)"}},
		{"wrong type", strings.Replace(minimal, "global_batch: 8", "global_batch: eight", 1), []string{`t.yaml:5: global_batch: want an integer, got the string "eight"`}},
		{"float for int", strings.Replace(minimal, "global_batch: 8", "global_batch: 8.5", 1), []string{"global_batch: want an integer, got the number 8.5"}},
		{"string for number", minimal + "defaults:\n  lr: fast\n", []string{`t.yaml:8: defaults.lr: want a number, got the string "fast"`}},
		{"null", minimal + "seed:\n", []string{"t.yaml:7: seed: want an integer, got nothing (null)"}},
		{"bad recipe", strings.Replace(minimal, "vila", "llava-2", 1), []string{`t.yaml:2: recipe: "llava-2" is not a recipe: want one of blip2, instructblip, qwen-vl, llava, vila, lwm, vqgan`}},
		{"bad size", strings.Replace(minimal, "tiny", "huge", 1), []string{`t.yaml:3: model.size: "huge" is not a model size`}},
		{"bad uri", strings.Replace(minimal, "s3://bkt/d", "http://x", 1), []string{`t.yaml:4: datasets[0].uri: "http://x"`}},
		{"no stages", strings.Replace(minimal, "stages: [{name: s, steps: 10}]", "stages: []", 1), []string{"stages: at least one stage is required"}},
		{"zero steps", strings.Replace(minimal, "steps: 10", "steps: 0", 1), []string{"t.yaml:6: stages[0].steps: 0: want between 1 and 2^40 steps"}},
		{"elastic inverted", minimal + "elastic: {min: 4, max: 2}\n", []string{"t.yaml:7: elastic.max: 2 is less than elastic.min (4)"}},
		{"bad shard", minimal + "parallelism: {shard: params}\n", []string{`t.yaml:7: parallelism.shard: "params": want one of none, optimizer, gradients`}},
		{"indivisible", minimal + "elastic: {min: 3, max: 3}\n", []string{"t.yaml:7: elastic: no world size in 3..3 divides the global batch of every stage"}},
		{"bad stage override", strings.Replace(minimal, "steps: 10}", "steps: 10, overrides: {beta2: 1.5}}", 1), []string{"t.yaml:6: stages[0].overrides.beta2: 1.5: want a number in [0, 1)"}},
		{"unknown stage dataset", strings.Replace(minimal, "steps: 10}", "steps: 10, datasets: {web: 1}}", 1), []string{`stages[0].datasets.web: no dataset named "web"`}},
		{"init from later", strings.Replace(minimal, "stages: [{name: s, steps: 10}]", "stages: [{name: a, steps: 1, init_from: b}, {name: b, steps: 1}]", 1), []string{`stages[0].init_from: "b" is not an earlier stage`}},
		{"bad duration", minimal + "failure: {stall_grace: 5}\n", []string{`failure.stall_grace: want a duration such as "90s" or "5m", got the integer 5`}},
		{"bad recompute", minimal + "defaults: {recompute: 1}\n", []string{`t.yaml:7: defaults.recompute: want true or false, got the integer 1`}},
		{"bad schedule", minimal + "defaults: {schedule: step}\n", []string{`defaults.schedule: "step" is not a schedule`}},
		{"min lr above lr", minimal + "defaults: {lr: 0.001, min_lr: 0.01}\n", []string{"stages[0]: min_lr 0.01 is greater than lr 0.001"}},
		{"many errors", "name: Bad_Name\nrecipe: x\nmodel: {size: tiny}\ndatasets: []\nglobal_batch: 0\nstages: [{name: s, steps: 1}]\n", []string{"t.yaml:1: name:", "t.yaml:2: recipe:", "t.yaml:4: datasets: at least one", "t.yaml:5: global_batch:", "(and 3 more)"}},
		{"nan", minimal + "defaults: {lr: .nan}\n", []string{"defaults.lr: want a finite number, got .nan"}},
		{"init unknown part", minimal + "init: {decoder: {uri: file:///m}}\n", []string{`t.yaml:7: init.decoder: "decoder" is not a part: want one of model, llm, vision, qformer, vqgan`}},
		{"init both", minimal + "init:\n  llm: {uri: file:///m, job: a}\n", []string{"t.yaml:8: init.llm: want exactly one of uri"}},
		{"init neither", minimal + "init:\n  llm: {step: 3}\n", []string{"t.yaml:8: init.llm: want exactly one of uri"}},
		{"eval bad", minimal + "eval: {uri: ./val, every: 0, samples: 500}\n", []string{`eval.uri: "./val": want s3://bucket/prefix`, "eval.every: 0: want the steps between evaluations", "eval.samples: 500: want 2-64 pairs"}},
		{"tokenizer bad uri", strings.Replace(minimal, "size: tiny", "size: tiny, tokenizer: ./tok", 1), []string{`t.yaml:3: model.tokenizer: "./tok": want s3://bucket/prefix or file:///path`}},
		{"init bad uri", minimal + "init:\n  llm:\n    uri: /models/llama\n", []string{`t.yaml:9: init.llm.uri: "/models/llama": want s3://bucket/prefix or file:///path`}},
		{"init step with uri", minimal + "init:\n  llm: {uri: file:///m, step: 3}\n", []string{"init.llm.step: step and checkpoint go with job"}},
		{"init self", minimal + "init:\n  model: {job: j}\n", []string{"init.model.job: a job cannot start from its own checkpoints"}},
		{"init unknown field", minimal + "init:\n  llm: {path: /m}\n", []string{"t.yaml:8: init.llm.path: unknown field; known fields here: checkpoint, job, step, uri"}},
		{"init not a map", minimal + "init: [llm]\n", []string{"t.yaml:7: init: want a mapping of part name to source, got a list"}},
		{"merge key", minimal + "defaults: {<<: {lr: 1}}\n", []string{"merge keys (<<) are not supported"}},
	} {
		_, err := ParseManifest("t.yaml", []byte(c.yaml))
		if err == nil {
			t.Errorf("%s: ParseManifest(%q) = nil error, want %q", c.name, c.yaml, c.want)
			continue
		}
		var me *ManifestError
		if !errors.As(err, &me) {
			t.Errorf("%s: ParseManifest error %T, want *ManifestError", c.name, err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: ParseManifest(%q)\n got error: %v\nwant it to contain: %s", c.name, c.yaml, err, w)
			}
		}
	}
}

func TestParseManifestEval(t *testing.T) {
	m, err := ParseManifest("t.yaml", []byte(minimal+"eval: {uri: \"s3://bkt/val\", every: 50}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Eval == nil || *m.Eval != (EvalPolicy{URI: "s3://bkt/val", Every: 50, Samples: 16}) {
		t.Fatalf("Eval = %+v", m.Eval)
	}
	b, err := m.Normalized()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := ParseManifest("n.yaml", b)
	if err != nil || m2.Eval == nil || *m2.Eval != *m.Eval {
		t.Fatalf("normalised form: %+v, %v\n%s", m2.Eval, err, b)
	}
}

func TestParseManifestTokenizer(t *testing.T) {
	y := strings.Replace(minimal, "size: tiny", "size: tiny, tokenizer: \"s3://loom/tokenizers/dev\"", 1)
	m, err := ParseManifest("t.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if m.Model.Tokenizer != "s3://loom/tokenizers/dev" {
		t.Fatalf("Model.Tokenizer = %q", m.Model.Tokenizer)
	}
	b, err := m.Normalized()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := ParseManifest("n.yaml", b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if m2.Model.Tokenizer != m.Model.Tokenizer {
		t.Fatalf("normalised form lost the tokenizer: %q\n%s", m2.Model.Tokenizer, b)
	}
}

func TestParseManifestInit(t *testing.T) {
	y := minimal + "init:\n  llm: {uri: s3://models/tinyllama}\n  vision: {job: clip-run, step: 500}\n"
	m, err := ParseManifest("t.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]InitSource{"llm": {URI: "s3://models/tinyllama"}, "vision": {Job: "clip-run", Step: 500}}
	if !reflect.DeepEqual(m.Init, want) {
		t.Fatalf("Init = %+v, want %+v", m.Init, want)
	}
	if got := m.InitJobs(); !reflect.DeepEqual(got, []string{"clip-run"}) {
		t.Fatalf("InitJobs = %v", got)
	}
	// The coordinator's resolved checkpoint survives the normalised form.
	src := m.Init["vision"]
	src.Checkpoint = &ResolvedCheckpoint{Step: 500, Stage: 1, Objects: []CheckpointObject{{Path: "ck/manifest.json", SHA256: strings.Repeat("a", 64), Size: 10}}}
	m.Init["vision"] = src
	b, err := m.Normalized()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := ParseManifest("n.yaml", b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !reflect.DeepEqual(m2.Init, m.Init) {
		t.Fatalf("round trip: %+v, want %+v", m2.Init, m.Init)
	}
}

func TestParseManifestDefaults(t *testing.T) {
	m, err := ParseManifest("t.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		field string
		got   any
		want  any
	}{
		{"seed", m.Seed, int64(1)},
		{"datasets[0].weight", m.Datasets[0].Weight, 1.0},
		{"elastic.min", m.Elastic.Min, 1},
		{"elastic.max", m.Elastic.Max, 1},
		{"checkpoint.interval", m.Checkpoint.Interval, int64(1000)},
		{"checkpoint.keep", m.Checkpoint.Keep, 3},
		{"failure.max_restarts", m.Failure.MaxRestarts, 10},
		{"failure.stall_factor", m.Failure.StallFactor, 10.0},
		{"defaults.lr", *m.Defaults.LR, 1e-4},
		{"defaults.schedule", *m.Defaults.Schedule, "cosine"},
	} {
		if c.got != c.want {
			t.Errorf("ParseManifest(minimal).%s = %v, want %v", c.field, c.got, c.want)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(minimal))
	if b, err := os.ReadFile("testdata/blip2.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("name: &a x\nrecipe: *a\n"))
	f.Add([]byte("stages: [{overrides: {losses: {a: 1, a: 2}}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest("fuzz.yaml", data)
		if err != nil {
			var me *ManifestError
			if !errors.As(err, &me) || len(me.Errs) == 0 {
				t.Fatalf("error %v is not a non-empty *ManifestError", err)
			}
			return
		}
		// A manifest that parses must validate, and its normalised form must
		// parse back to the same normalised form.
		if err := m.Validate(); err != nil {
			t.Fatalf("parsed manifest fails Validate: %v", err)
		}
		n1, err := m.Normalized()
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseManifest("n.yaml", n1)
		if err != nil {
			t.Fatalf("normalised form does not parse: %v\n%s", err, n1)
		}
		n2, _ := m2.Normalized()
		if !bytes.Equal(n1, n2) {
			t.Fatalf("normalised form changed:\n%s\nvs\n%s", n1, n2)
		}
	})
}

// TestDocExample keeps the example in docs/manifest.md valid.
func TestDocExample(t *testing.T) {
	b, err := os.ReadFile("../docs/manifest.md")
	if err != nil {
		t.Skip("docs/manifest.md not found")
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	if !ok {
		t.Fatal("docs/manifest.md has no yaml block")
	}
	block, _, _ := strings.Cut(rest, "```")
	m, err := ParseManifest("docs/manifest.md", []byte(block))
	if err != nil {
		t.Fatalf("the example in docs/manifest.md does not parse: %v", err)
	}
	if m.Stages[1].InitFrom != "representation" || m.StageGlobalBatch(1) != 128 {
		t.Errorf("doc example parsed to stage 1 init_from %q global batch %d", m.Stages[1].InitFrom, m.StageGlobalBatch(1))
	}
}
