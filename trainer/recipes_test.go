package trainer

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/loomtrain/loom/shard"
)

// TestRecipesEndToEnd runs every stage of every recipe at the tiny size on
// synthetic data: each stage initialises from the previous stage's final
// checkpoint, takes its steps with finite losses, and checkpoints.
func TestRecipesEndToEnd(t *testing.T) {
	d := sharedData(t)
	for _, rc := range Recipes() {
		t.Run(rc.Name, func(t *testing.T) {
			ctx := context.Background()
			m := testManifest(t, rc.Name, 1, 4)
			// The parts it starts from another recipe's job
			// (InstructBLIP's Q-Former) start from the seed here;
			// TestInstructBLIPStartsFromBLIP2 runs that path.
			m.Init = nil
			for i := range m.Stages {
				m.Stages[i].Overrides.MicroBatch = ptr(2)
			}
			ckpt := shard.NewMemStore()
			var restore *CheckpointRef
			var prev map[string][]float32 // the previous stage's final weights
			for i := range m.Stages {
				run, err := NewRun(ctx, d.job(m, i, ckpt), restore)
				if err != nil {
					t.Fatalf("stage %d (%s): NewRun: %v", i, m.Stages[i].Name, err)
				}
				before := snapshotParams(run)
				// At the transition, what the stage loaded from the last
				// one is that stage's final weights.
				carried := 0
				for name, v := range before {
					if pv, ok := prev[name]; ok && len(pv) == len(v) && slices.Equal(pv, v) {
						carried++
					}
				}
				if prev != nil && carried == 0 {
					t.Errorf("stage %s: no parameter carries the previous stage's final weights", m.Stages[i].Name)
				}
				for !run.Done() {
					p, err := run.Step(ctx)
					if err != nil {
						t.Fatalf("stage %s: Step: %v", m.Stages[i].Name, err)
					}
					if math.IsNaN(p.Loss) || math.IsInf(p.Loss, 0) || p.Loss <= 0 {
						t.Fatalf("stage %s step %d: loss %v", p.StageName, p.Step, p.Loss)
					}
					t.Logf("%s step %d: loss %.4f terms %v lr %.3g tokens %d", p.StageName, p.Step, p.Loss, p.Terms, p.LR, p.Tokens)
				}
				if _, err := run.Step(ctx); !errors.Is(err, ErrDone) {
					t.Fatalf("Step after the stage: %v, want ErrDone", err)
				}
				// Frozen parameters did not move; every trainable one did.
				after := snapshotParams(run)
				ps := run.model.Params()
				var still []string
				for _, name := range ps.Names() {
					moved := !slices.Equal(before[name], after[name])
					switch {
					case ps.Frozen(name) && moved:
						t.Errorf("stage %s: frozen %s changed", m.Stages[i].Name, name)
					case !ps.Frozen(name) && !moved:
						still = append(still, name)
					}
				}
				if len(still) > 0 {
					t.Errorf("stage %s: %d trainable parameters did not change in %d steps: %v", m.Stages[i].Name, len(still), m.Stages[i].Steps, still)
				}
				// The modules that train are the paper's.
				if want, ok := trainsModules[rc.Name+"/"+m.Stages[i].Name]; ok {
					var got []string
					for _, name := range ps.Names() {
						mod, _, _ := strings.Cut(name, ".")
						if !ps.Frozen(name) && !slices.Contains(got, mod) {
							got = append(got, mod)
						}
					}
					slices.Sort(got)
					if !slices.Equal(got, want) {
						t.Errorf("stage %s: trains %v, want %v", m.Stages[i].Name, got, want)
					}
				}
				prev = after
				ev, err := run.Evaluate(ctx, heldOut(3))
				if err != nil {
					t.Fatalf("stage %s: Evaluate: %v", m.Stages[i].Name, err)
				}
				if ev.N != 3 || ev.Chance != 1.0/3 || ev.Retrieval < 0 || ev.Retrieval > 1 || !(ev.CaptionLoss > 0) {
					t.Errorf("stage %s: Evaluate = %+v", m.Stages[i].Name, ev)
				}
				res, err := run.SaveSync(ctx)
				if err != nil {
					t.Fatalf("stage %s: checkpoint: %v", m.Stages[i].Name, err)
				}
				restore = &res.Ref
				if err := run.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// trainsModules are the top-level modules with trainable parameters in
// each stage (recipe/stage), sorted: what the papers train, everything else
// frozen.
var trainsModules = map[string][]string{
	"blip2/representation":     {"ln_vision", "qformer"},
	"blip2/generative":         {"llm_proj", "ln_vision", "qformer"},
	"instructblip/instruction": {"llm_proj", "ln_vision", "qformer"},
	"llava/pretrain":           {"mm_projector"},
	"llava/finetune":           {"llm", "mm_projector"},
	"vila/align":               {"mm_projector"},
	"vila/pretrain":            {"llm", "mm_projector"},
	"vila/sft":                 {"llm", "mm_projector"},
}

func ptr[T any](v T) *T { return &v }

// snapshotParams copies every parameter's values (host copies of device
// ones).
func snapshotParams(r *Run) map[string][]float32 {
	ps := r.model.Params()
	out := map[string][]float32{}
	for _, name := range ps.Names() {
		out[name] = slices.Clone(ps.Get(name).HostData())
	}
	return out
}
