package trainer

import (
	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/shard"
)

// LLaVA-1.5 (Liu et al. 2023, arXiv 2310.03744; haotian-liu/LLaVA c121f04),
// recipes.md §3: CLIP ViT-L/336 (frozen), an mlp2x_gelu projector and
// Vicuna-1.5.
func init() {
	register(&Recipe{
		Name: "llava", Family: models.LLaVA,
		Source:  "LLaVA-1.5 arXiv 2310.03744 §3–4, Table 7 [P][S]; haotian-liu/LLaVA@c121f04 scripts/v1_5/{pretrain,finetune}.sh, llava/train/train.py preprocess_plain / preprocess_v1 [C]",
		Aliases: map[string][]string{"projector": {"mm_projector"}, "vit": {"vit"}},
		Stages: []StageSpec{
			{
				Name: "pretrain",
				// Stage 1, feature alignment: only the projector trains
				// (tune_mm_mlp_adapter: model.requires_grad_(False), then
				// the projector True) on caption pairs, the 'plain'
				// template: <image> + caption, loss on the caption.
				Source:      "recipes.md §3 stage1_feature_alignment: ViT and LLM frozen, projector trains [C]; LCS-558K caption pairs, preprocess_plain [C]; lr 1e-3, wd 0, warmup_ratio 0.03, cosine, batch 256 [C] pretrain.sh",
				Trainable:   []string{"mm_projector"},
				Kinds:       []shard.Kind{shard.KindImageText},
				Format:      FormatLLaVA,
				Losses:      map[string]float64{"lm": 1},
				Normaliser:  PerToken,
				WarmupRatio: 0.03,
				Hyper:       api.Hyperparameters{LR: f64(1e-3), MinLR: f64(0), Schedule: str("cosine"), WeightDecay: f64(0), Beta1: f64(0.9), Beta2: f64(0.999)},
				Eval:        EvalCaption,
			},
			{
				Name: "finetune",
				// Stage 2, visual instruction tuning: projector + LLM on
				// llava_v1_5_mix665k, whose ShareGPT 40K conversations are
				// text-only (≈6% of 665K), loss on the assistant turns.
				Source:    "recipes.md §3 stage2_visual_instruction_tuning: ViT frozen, projector + LLM train [C]; mix665k incl. ShareGPT 40K text-only [S] Table 7; Vicuna v1 template, loss on assistant turns [C] preprocess_v1; lr 2e-5, wd 0, warmup_ratio 0.03, cosine, batch 128 [C] finetune.sh",
				Trainable: []string{"mm_projector", "llm"},
				Kinds:     []shard.Kind{shard.KindConversation, shard.KindText},
				// 40K text-only of 665K: the visual conversations and the
				// text-only data at LLaVA-1.5's ratio. Text-only
				// conversations (a LLaVA JSON record without "image") can
				// also sit in the conversation dataset itself, as they do
				// in mix665k.
				Mix:         map[shard.Kind]float64{shard.KindConversation: 0.94, shard.KindText: 0.06},
				Format:      FormatLLaVA,
				Losses:      map[string]float64{"lm": 1},
				Normaliser:  PerToken,
				WarmupRatio: 0.03,
				Hyper:       api.Hyperparameters{LR: f64(2e-5), MinLR: f64(0), Schedule: str("cosine"), WeightDecay: f64(0), Beta1: f64(0.9), Beta2: f64(0.999)},
				Eval:        EvalCaption,
			},
		},
	})
}
