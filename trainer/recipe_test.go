package trainer

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
)

func parseTestManifest(t *testing.T) *api.Manifest {
	t.Helper()
	data, err := os.ReadFile("../api/testdata/blip2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := api.ParseManifest("blip2.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestResolveLayers checks the hyperparameter layering on the api's
// example manifest: recipe values where the manifest keeps the built-in
// defaults, the manifest's where it changes them, stage overrides last.
func TestResolveLayers(t *testing.T) {
	m := parseTestManifest(t)
	s0, err := Resolve(m, 0)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := Resolve(m, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what      string
		got, want any
	}{
		{"stage 0 recipe stage", s0.Spec.Name, "representation"},
		{"stage 0 lr (manifest default = built-in, recipe wins)", *s0.Hyper.LR, 1e-4},
		{"stage 0 min_lr (recipe, LAVIS)", *s0.Hyper.MinLR, 1e-5},
		{"stage 0 beta2 (manifest default = built-in 0.999, recipe's paper value)", *s0.Hyper.Beta2, 0.98},
		{"stage 0 warmup (manifest changed it)", *s0.Hyper.WarmupSteps, int64(200)},
		{"stage 0 trainable", fmt.Sprint(s0.Trainable), "[qformer ln_vision]"},
		{"stage 1 lr (stage override)", *s1.Hyper.LR, 5e-5},
		{"stage 1 trainable (alias proj)", fmt.Sprint(s1.Trainable), "[qformer ln_vision llm_proj]"},
		{"stage 1 global batch", s1.GlobalBatch, 128},
		{"stage 1 starts at", s1.Start, int64(2000)},
		{"stage 1 init from", s1.InitFrom, 0},
		{"stage 1 model stage", s1.Spec.ModelStage, 2},
	} {
		if fmt.Sprint(tc.got) != fmt.Sprint(tc.want) {
			t.Errorf("Resolve(blip2.yaml): %s = %v, want %v", tc.what, tc.got, tc.want)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(m *api.Manifest)
		want string
	}{
		{"negative loss weight", func(m *api.Manifest) { m.Stages[0].Overrides.Losses = map[string]float64{"itc": -1} }, "stages[0].overrides.losses.itc: -1: want a finite weight >= 0"},
		{"infinite loss weight", func(m *api.Manifest) { m.Stages[0].Overrides.Losses = map[string]float64{"itm": math.Inf(1)} }, "stages[0].overrides.losses.itm: +Inf"},
		{"all loss weights zero", func(m *api.Manifest) {
			m.Stages[0].Overrides.Losses = map[string]float64{"itc": 0, "itm": 0, "itg": 0}
		}, "stages[0].overrides.losses: every loss term of stage"},
		{"default loss no stage computes", func(m *api.Manifest) { m.Defaults.Losses = map[string]float64{"ce_vision": 1} }, "defaults.losses.ce_vision: no stage"},
		{"NaN default loss weight", func(m *api.Manifest) { m.Defaults.Losses = map[string]float64{"itg": math.NaN()} }, "defaults.losses.itg: NaN"},
		{"unknown loss", func(m *api.Manifest) { m.Stages[0].Overrides.Losses = map[string]float64{"lm": 1} }, "stages[0].overrides.losses.lm"},
		{"unknown recipe", func(m *api.Manifest) { m.Recipe = "flamingo" }, `recipe "flamingo"`},
		{"bad init_from", func(m *api.Manifest) { m.Stages[1].InitFrom = "nope" }, `stages[1].init_from: "nope"`},
	} {
		m := parseTestManifest(t)
		tc.edit(m)
		_, err := Resolve(m, 0)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			if _, err1 := Resolve(m, 1); err1 != nil && strings.Contains(err1.Error(), tc.want) {
				continue
			}
			t.Errorf("%s: Resolve error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// TestNewRunRefuses: job and manifest mistakes fail NewRun naming the
// field; nothing is built.
// TestResolveLossWeights: the manifest's weights replace the recipe's for
// the terms a stage computes; defaults apply to every stage computing the
// term, overrides win.
func TestResolveLossWeights(t *testing.T) {
	m := parseTestManifest(t)
	m.Defaults.Losses = map[string]float64{"itm": 2, "lm": 0.5}
	m.Stages[0].Overrides.Losses = map[string]float64{"itg": 0}
	m.Stages[1].Overrides.Losses = nil // the file restates lm: 1
	for _, tc := range []struct {
		stage int
		want  string
	}{{0, "map[itc:1 itg:0 itm:2]"}, {1, "map[lm:0.5]"}} {
		st, err := Resolve(m, tc.stage)
		if err != nil {
			t.Fatalf("Resolve(stage %d): %v", tc.stage, err)
		}
		if got := fmt.Sprint(st.Losses); got != tc.want {
			t.Errorf("Resolve(stage %d).Losses = %s, want %s", tc.stage, got, tc.want)
		}
	}
}

func TestNewRunRefuses(t *testing.T) {
	d := sharedData(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		edit func(j *Job)
		want string
	}{
		{"size without preset", func(j *Job) { j.Manifest.Model.Size = "base" }, "model.size"},
		{"rank outside world", func(j *Job) { j.Rank = 2 }, "rank 2 of world 1"},
		{"world without comm", func(j *Job) { j.World = 2 }, "communicator"},
		{"kind the stage does not read", func(j *Job) {
			j.Manifest.Stages[0].Datasets = map[string]float64{"video-text": 1}
			j.Manifest.Datasets = append(j.Manifest.Datasets, api.Dataset{Name: "video-text", URI: "s3://test/v", Weight: 1})
		}, "dataset video-text (s3://test/v): kind video-text, but stage \"align\""},
		{"no trainable parameter match", func(j *Job) { j.Manifest.Stages[0].Overrides.Trainable = []string{"decoder"} }, `trainable "decoder"`},
		{"later stage without restore", func(j *Job) { j.Stage = 1 }, "restore is nil"},
		{"missing store", func(j *Job) { j.Store = nil }, "checkpoint store"},
	} {
		m := testManifest(t, "vila", 2, 4)
		j := d.job(m, 0, shard.NewMemStore())
		tc.edit(&j)
		run, err := NewRun(ctx, j, nil)
		if err == nil {
			run.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewRun error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// TestStageTransitions: BLIP-2 stage 2 keeps the stage-1 Q-Former and
// ViT, Qwen-VL stage 2 doubles the resolution with the same position
// table, and LWM raises θ and the context; the frozen sets follow the
// recipe.
func TestStageTransitions(t *testing.T) {
	d := sharedData(t)
	ctx := context.Background()
	for _, tc := range []struct {
		recipe    string
		check     func(t *testing.T, a, b *Run)
		trainable []string // parameter name prefixes that must train in the second stage
		frozen    []string // that must not
	}{
		{"blip2", func(t *testing.T, a, b *Run) {
			for _, name := range []string{"vit.embeddings.position_embedding.weight", "qformer.query_tokens", "ln_vision.weight"} {
				if !slices.Equal(a.model.Params().Get(name).Data, b.model.Params().Get(name).Data) {
					t.Errorf("%s not carried from stage 1 to stage 2", name)
				}
			}
		}, []string{"qformer.layer.0.attention", "llm_proj"}, []string{"vit.", "llm."}},
		{"qwen-vl", func(t *testing.T, a, b *Run) {
			if a.cfg.ImageSize*2 != b.cfg.ImageSize {
				t.Errorf("image size %d → %d, want doubled", a.cfg.ImageSize, b.cfg.ImageSize)
			}
			name := "visual.embeddings.position_embedding.weight"
			if !slices.Equal(a.model.Params().Get(name).Data, b.model.Params().Get(name).Data) {
				t.Errorf("%s not carried across the resolution change", name)
			}
		}, []string{"visual.", "llm."}, nil},
		{"lwm", func(t *testing.T, a, b *Run) {
			if a.cfg.LLM.Theta != 1e6 || b.cfg.LLM.Theta != 1e7 || a.stage.MaxSeqLen >= b.stage.MaxSeqLen {
				t.Errorf("θ %g → %g, context %d → %d: want 1e6 → 1e7 and a longer context", a.cfg.LLM.Theta, b.cfg.LLM.Theta, a.stage.MaxSeqLen, b.stage.MaxSeqLen)
			}
		}, []string{"llm.model.layers.", "llm.model.embed_tokens", "llm.lm_head"}, []string{"llm.model.vision_embed_tokens", "llm.vision_head"}},
	} {
		t.Run(tc.recipe, func(t *testing.T) {
			m := testManifest(t, tc.recipe, 1, 2)
			store := shard.NewMemStore()
			a, err := NewRun(ctx, d.job(m, 0, store), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if _, err := a.Step(ctx); err != nil {
				t.Fatal(err)
			}
			res, err := a.SaveSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			b, err := NewRun(ctx, d.job(m, 1, store), &res.Ref)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			tc.check(t, a, b)
			p := b.model.Params()
			for _, name := range p.Names() {
				for _, pre := range tc.trainable {
					if strings.HasPrefix(name, pre) && p.Frozen(name) {
						t.Errorf("stage %s: %s is frozen, want trainable", b.stage.Name, name)
					}
				}
				for _, pre := range tc.frozen {
					if strings.HasPrefix(name, pre) && !p.Frozen(name) {
						t.Errorf("stage %s: %s trains, want frozen", b.stage.Name, name)
					}
				}
			}
		})
	}
}

// Example_resolve shows how a manifest stage resolves against its recipe.
func Example_resolve() {
	m, _ := ExampleManifest("qwen-vl", "tiny", func(k shard.Kind) string { return "s3://data/" + string(k) }, 100, 8)
	for i := range m.Stages {
		st, _ := Resolve(m, i)
		f := st.Spec.ImageFactor
		if f == 0 {
			f = 1
		}
		fmt.Printf("%s: lr %g, image ×%g, trains %v, reads %v\n", st.Name, *st.Hyper.LR, f, st.Trainable, st.Spec.Kinds)
	}
	// Output:
	// pretrain: lr 0.0002, image ×0.5, trains [visual], reads [image-text]
	// multitask: lr 5e-05, image ×1, trains [visual llm], reads [image-text interleaved text]
	// sft: lr 1e-05, image ×1, trains [visual.attn_pool visual.ln_post visual.proj llm], reads [conversation text]
}

// TestLossWeightsReachModel: the manifest's loss weights become the
// model's: the step's loss is Σ w·term over the terms, and a term of
// weight 0 is not computed.
func TestLossWeightsReachModel(t *testing.T) {
	d := sharedData(t)
	m := testManifest(t, "blip2", 1, 4)
	m.Stages[0].Overrides.Losses = map[string]float64{"itm": 2, "itg": 0}
	run, err := NewRun(context.Background(), d.job(m, 0, shard.NewMemStore()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	if got := fmt.Sprint(run.Model().Config().LossWeights); got != "map[itc:1 itg:0 itm:2]" {
		t.Errorf("model loss weights %s, want map[itc:1 itg:0 itm:2]", got)
	}
	p, err := run.Step(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Terms["itg"]; ok {
		t.Errorf("Step terms %v: itg has weight 0 and must not be computed", p.Terms)
	}
	want := p.Terms["itc"] + 2*p.Terms["itm"]
	if math.Abs(p.Loss-want) > 1e-5*math.Abs(want) {
		t.Errorf("Step loss %v, want itc + 2·itm = %v (terms %v)", p.Loss, want, p.Terms)
	}
}

// BLIP-2 stage 2 feeds the LLM BOS + caption + EOS after the soft prompts,
// as LAVIS's blip2_opt does (the OPT tokenizer puts BOS first).
func TestBLIP2Stage2RowStartsWithBOS(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	m := testManifest(t, "blip2", 2, 4)
	r, err := NewRun(ctx, d.job(m, 0, shard.NewMemStore()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st, err := Resolve(m, 1)
	if err != nil {
		t.Fatal(err)
	}
	b := *r.builder
	b.format = st.Spec.Format
	s := synth.Sample(shard.KindImageText, 1, 0)
	rw, err := b.build(shard.KindImageText, s, 0)
	if err != nil {
		t.Fatal(err)
	}
	sp := r.cfg.Special
	cap := b.enc(s.Caption)
	cap = cap[:min(len(cap), 30)] // 32 tokens in all, LAVIS max_txt_len
	want := append(append([]int32{sp.BOS}, cap...), sp.EOS)
	if !slices.Equal(rw.Tokens, want) || !rw.Prefixed {
		t.Fatalf("stage 2 row %v (prefixed %v), want %v after the soft prompts", rw.Tokens, rw.Prefixed, want)
	}
}

// TestBLIP2RowsKeyTheirImage: BLIP-2 stage 1 rows carry a key of their
// image's bytes, equal for two captions of one image and different for
// another image, and the assembled batch has them (models then keeps such
// rows out of each other's negatives, LAVIS's image_id).
func TestBLIP2RowsKeyTheirImage(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	m := testManifest(t, "blip2", 2, 4)
	r, err := NewRun(ctx, d.job(m, 0, shard.NewMemStore()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a, other := synth.Sample(shard.KindImageText, 1, 0), synth.Sample(shard.KindImageText, 1, 1)
	b := a
	b.Caption = "another caption of the same image"
	var rows []row
	for i, s := range []shard.Sample{a, b, other} {
		rw, err := r.builder.build(shard.KindImageText, s, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, rw)
	}
	batch, err := assemble(rows, 1)
	if err != nil {
		t.Fatal(err)
	}
	k := batch.ImageKeys
	if len(k) != 3 || k[0] == 0 || k[0] != k[1] || k[2] == k[0] {
		t.Fatalf("image keys %x: want the two captions of one image equal and non-zero, the other image's different", k)
	}
}
