package trainer

import (
	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/shard"
)

// LWM (Liu et al. 2024, arXiv 2402.08268; LargeWorldModel/LWM@f45d2b7),
// recipes.md §5. Context lengths are the paper's scaled down to what a CPU
// holds (the paper's are in each stage's Source); RoPE θ follows the
// paper's schedule.
func init() {
	text := func(name string, ctx int, theta float64, warm float64, src string) StageSpec {
		return StageSpec{
			Name:        name,
			Source:      src,
			Kinds:       []shard.Kind{shard.KindText},
			Format:      FormatLWM,
			MaxSeqLen:   ctx,
			RopeTheta:   theta,
			Pack:        true,
			Losses:      map[string]float64{"ce_text": 0.5},
			Normaliser:  PerToken, // text only: the loss is 0.5 × the token mean
			WarmupRatio: warm,
			// Table 11: lr 4e-5 constant; wd 0.1 (run_train_text.sh).
			Hyper: api.Hyperparameters{LR: f64(4e-5), MinLR: f64(4e-5), Schedule: str("constant"), WeightDecay: f64(0.1)},
			Eval:  EvalCaption,
			// Text reaches neither the vision-code embeddings nor their
			// head: LWM's text stages are LLaMA-2 with its own vocabulary,
			// the VQGAN codes joining it in the vision stages (§4.1). Frozen,
			// they carry no optimizer state and their random init reaches
			// vision-1k unchanged.
			Frozen: []string{"llm.model.vision_embed_tokens", "llm.vision_head"},
		}
	}
	vision := func(name string, ctx int, kinds []shard.Kind, lr, minLR float64, sched string, warm float64, src string) StageSpec {
		// 16% of each batch is pure text (recipes.md §5 text_mixing [S]);
		// the rest is split evenly over the vision kinds.
		mix := map[shard.Kind]float64{shard.KindText: 0.16}
		for _, k := range kinds {
			if k != shard.KindText {
				mix[k] = 0.84 / float64(len(kinds)-1)
			}
		}
		return StageSpec{
			Mix:         mix,
			Name:        name,
			Source:      src,
			Kinds:       kinds,
			Format:      FormatLWM,
			MaxSeqLen:   ctx,
			RopeTheta:   5e7,
			Pack:        true,
			Losses:      map[string]float64{"ce_text": 0.5, "ce_vision": 0.5},
			Normaliser:  PerSample,
			WarmupRatio: warm,
			Hyper:       api.Hyperparameters{LR: f64(lr), MinLR: f64(minLR), Schedule: str(sched), WeightDecay: f64(0.1)},
			Eval:        EvalCaption,
		}
	}
	// The stages whose paper mesh is sequence-parallel run ring attention
	// across the workers.
	ring := func(s StageSpec) StageSpec { s.RingAttention = true; return s }
	register(&Recipe{
		Name: "lwm", Family: models.LWM,
		Source: "LWM arXiv 2402.08268 Tables 11, 13 [S]; LargeWorldModel/LWM@f45d2b7 llama.py, vision_llama.py, data.py, train.py, README [C]",
		Stages: []StageSpec{
			text("text-32k", 64, 1e6, 100.0/1200, "recipes.md §5 Stage I 32K: ctx 2^15, θ 1M, 1200 steps, warmup 100, lr 4e-5 [S]; Books3 10K–100K-token docs [C]"),
			text("text-128k", 128, 1e7, 200.0/3000, "recipes.md §5 Stage I 128K: ctx 2^17, θ 10M [C] README, 3000 steps, warmup 200 [S]"),
			text("text-256k", 256, 1e7, 200.0/3000, "recipes.md §5 Stage I 256K: ctx 2^18, θ 10M [C], 3000 steps, warmup 200 [S]"),
			ring(text("text-512k", 384, 2.5e7, 50.0/720, "recipes.md §5 Stage I 512K: ctx 2^19, θ 25M [C], 720 steps, warmup 50, mesh 1,-1,16,2 (sequence-parallel 2) [S]")),
			ring(text("text-1m", 512, 5e7, 25.0/450, "recipes.md §5 Stage I 1M: ctx 2^20, θ 50M [C], 450 steps, warmup 25, mesh 1,-1,16,4 (sequence-parallel 4) [S]")),
			vision("vision-1k", 192, []shard.Kind{shard.KindImageText, shard.KindText}, 6e-4, 6e-5, "cosine", 1000.0/45000,
				"recipes.md §5 Stage II 1K: seq 2^10, θ 50M, lr 6e-4→6e-5 cosine, warmup 1000 of 45000 [S]; text-image pairs, 16% pure text [S]; 0.5·CE_vision + 0.5·CE_text [C] train.py; masked sequence packing [S]"),
			vision("vision-8k", 384, []shard.Kind{shard.KindVideoText, shard.KindImageText, shard.KindText}, 6e-4, 6e-5, "cosine", 500.0/14000,
				"recipes.md §5 Stage II 8K: seq 2^13, lr 6e-4→6e-5, warmup 500 of 14000 [S]; text-video (30 frames) + 16% text [S]"),
			vision("chat-32k", 512, []shard.Kind{shard.KindVideoText, shard.KindImageText, shard.KindText}, 8e-5, 8e-5, "constant", 100.0/1200,
				"recipes.md §5 Stage II Chat-32K: seq 2^15, lr 8e-5, warmup 100 of 1200 [S]; understanding/generation tasks balanced (25% each) [S]"),
		},
	})
}
