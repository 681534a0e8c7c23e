package trainer

import (
	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/shard"
)

// Qwen-VL (Bai et al. 2023, arXiv 2308.12966; QwenLM/Qwen-VL@aa00ed0),
// recipes.md §2. The paper was not read in full: stage facts are [S],
// the optimiser details of stages 2–3 [U] or from the public fine-tuning
// script [C].
func init() {
	register(&Recipe{
		Name: "qwen-vl", Family: models.QwenVL,
		Source:  "Qwen-VL arXiv 2308.12966 [S]; QwenLM/Qwen-VL@aa00ed0 finetune.py, finetune_ds.sh [C]; HF visual.py via vllm qwen_vl.py [C]",
		Aliases: map[string][]string{"vit": {"visual"}, "adapter": {"visual.attn_pool", "visual.ln_post", "visual.proj"}},
		Stages: []StageSpec{
			{
				Name: "pretrain",
				// Stage 1: the LLM is frozen; the ViT and the adapter
				// train on image-text pairs at 224 px (256 ViT tokens).
				Source:      "recipes.md §2 stage1_pretraining: LLM frozen, ViT + adapter train, 224 px, caption CE [S]; max lr 2e-4 [S]; β2 0.98, min 1e-6, warmup 500 of 50k, wd 0.05 [U]",
				Trainable:   []string{"visual"},
				Kinds:       []shard.Kind{shard.KindImageText},
				Format:      FormatQwen,
				ImageFactor: 0.5,
				Losses:      map[string]float64{"lm": 1},
				Normaliser:  PerToken,
				WarmupRatio: 0.01,
				Hyper:       api.Hyperparameters{LR: f64(2e-4), MinLR: f64(1e-6), Schedule: str("cosine"), WeightDecay: f64(0.05), Beta1: f64(0.9), Beta2: f64(0.98), Eps: f64(1e-6)},
				Eval:        EvalCaption,
			},
			{
				Name: "multitask",
				// Stage 2: everything trains, at 448 px (the ViT's learned
				// positions and the adapter's key grid are interpolated,
				// get_abs_pos), on multi-task/interleaved data mixed with
				// pure text (7.8M of ≈77M samples).
				Source:    "recipes.md §2 stage2_multitask_pretraining: all parameters [S], 448 px with position interpolation [S][C], interleaved multi-task data + pure-text autoregression [S], seq 2048 [U]; lr 5e-5 → 1e-5, warmup 400 of ~19k [U]",
				Trainable: []string{"visual", "llm"},
				Kinds:     []shard.Kind{shard.KindImageText, shard.KindInterleaved, shard.KindText},
				// 7.8M pure text of ≈77M samples [S].
				Mix:         map[shard.Kind]float64{shard.KindImageText: 0.45, shard.KindInterleaved: 0.45, shard.KindText: 0.1},
				Format:      FormatQwen,
				ImageFactor: 1,
				Losses:      map[string]float64{"lm": 1},
				Normaliser:  PerToken,
				WarmupRatio: 0.02,
				Hyper:       api.Hyperparameters{LR: f64(5e-5), MinLR: f64(1e-5), Schedule: str("cosine"), WeightDecay: f64(0.05), Beta1: f64(0.9), Beta2: f64(0.98), Eps: f64(1e-6)},
				Eval:        EvalCaption,
			},
			{
				Name: "sft",
				// Stage 3: instruction tuning with the ViT frozen but its
				// attention pool (the adapter) trained (finetune.py fix_vit:
				// visual.requires_grad_(False), attn_pool True); loss on
				// assistant turns only (ChatML, preprocess).
				Source:      "recipes.md §2 stage3_sft: ViT frozen, adapter + LLM train [S][C]; loss on assistant content only [C]; mixed with pure-text dialogue [S]; lr 1e-5, wd 0.1, β2 0.95, warmup 1%, cosine [C] finetune_ds.sh",
				Trainable:   []string{"visual.attn_pool", "visual.ln_post", "visual.proj", "llm"},
				Kinds:       []shard.Kind{shard.KindConversation, shard.KindText},
				Mix:         map[shard.Kind]float64{shard.KindConversation: 0.8, shard.KindText: 0.2},
				Format:      FormatQwen,
				ImageFactor: 1,
				Losses:      map[string]float64{"lm": 1},
				Normaliser:  PerToken,
				WarmupRatio: 0.01,
				Hyper:       api.Hyperparameters{LR: f64(1e-5), MinLR: f64(0), Schedule: str("cosine"), WeightDecay: f64(0.1), Beta1: f64(0.9), Beta2: f64(0.95)},
				Eval:        EvalCaption,
			},
		},
	})
}
