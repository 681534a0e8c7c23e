package models

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"

	"github.com/loomtrain/loom/kernels"
)

// TestOverfitOneBatch trains each tiny family on one batch: the loss must
// fall by at least 90%. Frozen parts stay frozen as the family builds them
// (BLIP-2's ViT; the LLM in BLIP-2 stage 2 / InstructBLIP; LLaVA's ViT).
func TestOverfitOneBatch(t *testing.T) {
	steps := map[Family]int{BLIP2: 150, InstructBLIP: 150, QwenVL: 120, LLaVA: 120, VILA: 120, LWM: 120, VQGAN: 300}
	for _, f := range Families {
		t.Run(string(f), func(t *testing.T) {
			c, _ := Preset(f, "tiny")
			c.LabelSmoothing = 0 // smoothing puts a floor under the loss
			m, err := New(c, 3)
			if err != nil {
				t.Fatal(err)
			}
			if f == InstructBLIP {
				// A frozen random tiny LLM cannot express a peaked
				// distribution (its head is N(0, 0.02²)); a real run starts
				// from a pretrained LLM. Train it here to test the wiring.
				if _, err := m.Params().Unfreeze("llm.*"); err != nil {
					t.Fatal(err)
				}
			}
			b := tinyBatch(t, c, 2)
			opt := kernels.NewAdamW(m.Params().Trainable(), kernels.AdamWConfig{LR: 1e-2})
			var first, last float32
			for s := 0; s < steps[f]; s++ {
				tp := kernels.NewTape()
				m.Params().ZeroGrad()
				out, err := m.Forward(tp, b)
				if err != nil {
					t.Fatal(err)
				}
				if s == 0 {
					first = out.Loss.Item()
				}
				last = out.Loss.Item()
				tp.Backward(out.Loss)
				opt.Step()
			}
			t.Logf("%s: loss %.4f -> %.4f after %d steps", f, first, last, steps[f])
			if last > 0.1*first {
				t.Errorf("%s: loss fell from %.4f to %.4f, want at most 10%% of the start", f, first, last)
			}
		})
	}
}

// gradProbe names the parameters whose gradients the finite-difference
// check samples, per family: one from each trainable module on the path.
var gradProbe = map[Family][]string{
	BLIP2:        {"ln_vision.weight", "qformer.query_tokens", "qformer.layer.0.crossattention.key.weight", "qformer.layer.0.crossattention.value.weight", "qformer.layer.1.attention.query.weight", "qformer.layer.1.output.dense.weight", "qformer.itm_head.weight", "qformer.temp", "qformer.embeddings.word_embeddings.weight"},
	InstructBLIP: {"qformer.layer.0.attention.value.weight", "qformer.layer.0.crossattention.value.weight", "qformer.layer.1.output_query.dense.weight", "llm_proj.weight"},
	QwenVL:       {"visual.embeddings.position_embedding.weight", "visual.attn_pool.query", "visual.attn_pool.kv_proj.weight", "visual.proj", "llm.model.layers.1.self_attn.q_proj.bias", "llm.model.layers.0.self_attn.v_proj.bias", "llm.lm_head.weight"},
	LLaVA:        {"mm_projector.0.weight", "mm_projector.2.weight", "llm.model.layers.0.mlp.gate_proj.weight", "llm.model.embed_tokens.weight"},
	VILA:         {"mm_projector.0.weight", "mm_projector.1.weight", "llm.model.layers.1.self_attn.k_proj.weight"},
	LWM:          {"llm.model.vision_embed_tokens.weight", "llm.vision_head.weight", "llm.model.layers.0.self_attn.o_proj.weight", "llm.lm_head.weight"},
	// The encoder's gradient passes the straight-through estimator, which
	// finite differences cannot see; the decoder's is exact.
	VQGAN: {"vqgan.decoder.conv_out.weight", "vqgan.decoder.up.1.block.0.conv1.weight", "vqgan.decoder.mid.block_1.norm1.weight"},
}

// TestGradCheck compares, for a few parameters of every tiny family, the
// tape's gradient with a central finite difference of the whole model's
// loss after 5 warm-up steps (float32, Richardson-extrapolated central differences, the 2 entries of largest gradient per tensor).
func TestGradCheck(t *testing.T) {
	for _, f := range Families {
		t.Run(string(f), func(t *testing.T) {
			c, _ := Preset(f, "tiny")
			m, err := New(c, 5)
			if err != nil {
				t.Fatal(err)
			}
			if f == InstructBLIP {
				// At N(0, 0.02²) the projection into the frozen LLM passes
				// gradients to the Q-Former at the finite difference's
				// float32 noise floor; the check holds for any weights, so
				// enlarge it.
				for i, w := range m.Params().Get("llm_proj.weight").Data {
					m.Params().Get("llm_proj.weight").Data[i] = 25 * w
				}
			}
			b := tinyBatch(t, c, 4)
			// A few optimizer steps first: at initialisation attention is
			// nearly uniform and the gradients of q/k weights are at the
			// float32 noise floor of the finite difference.
			warm := kernels.NewAdamW(m.Params().Trainable(), kernels.AdamWConfig{LR: 1e-2})
			for s := 0; s < 5; s++ {
				tp := kernels.NewTape()
				m.Params().ZeroGrad()
				out, err := m.Forward(tp, b)
				if err != nil {
					t.Fatal(err)
				}
				tp.Backward(out.Loss)
				warm.Step()
			}
			loss := func() float64 {
				out, err := m.Forward(nil, b)
				if err != nil {
					t.Fatal(err)
				}
				return float64(out.Loss.Item())
			}
			m.Params().ZeroGrad()
			tp := kernels.NewTape()
			out, err := m.Forward(tp, b)
			if err != nil {
				t.Fatal(err)
			}
			tp.Backward(out.Loss)
			for _, name := range gradProbe[f] {
				p := m.Params().Get(name)
				if p == nil {
					t.Fatalf("no parameter %q (have %s…)", name, strings.Join(m.Params().Names()[:5], ", "))
				}
				if p.Grad == nil {
					t.Errorf("%s: no gradient reached it", name)
					continue
				}
				idx := make([]int, len(p.Grad))
				for i := range idx {
					idx[i] = i
				}
				sort.Slice(idx, func(a, b int) bool { return math.Abs(float64(p.Grad[idx[a]])) > math.Abs(float64(p.Grad[idx[b]])) })
				for _, i := range idx[:min(2, len(idx))] {
					// Richardson extrapolation of two central differences
					// cancels the h² term: some parameters (a bias feeding
					// every image token) make the loss strongly curved.
					diff := func(h float32) float64 {
						orig := p.Data[i]
						p.Data[i] = orig + h
						up := loss()
						p.Data[i] = orig - h
						down := loss()
						p.Data[i] = orig
						return (up - down) / (2 * float64(h))
					}
					// Two step sizes: the small one is limited by float32
					// round-off of the loss, the large one by curvature. A
					// wrong gradient misses both.
					ana := float64(p.Grad[i])
					ok := func(num float64) bool { return math.Abs(ana-num) <= 0.05*math.Abs(num)+2e-5 }
					small := (4*diff(2e-3) - diff(4e-3)) / 3
					large := (4*diff(2e-2) - diff(4e-2)) / 3
					msg := fmt.Sprintf("%s[%d]: tape gradient %.6g, finite differences %.6g (h=2e-3) %.6g (h=2e-2)", name, i, ana, small, large)
					if !ok(small) && !ok(large) {
						t.Error(msg)
					} else {
						t.Log(msg)
					}
				}
			}
		})
	}
}
