package trainer

import (
	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/shard"
)

// VILA (Lin et al., CVPR 2024, arXiv 2312.07533; NVlabs/VILA v1.0),
// recipes.md §4, on LLaVA-1.5's architecture (§3).
func init() {
	register(&Recipe{
		Name: "vila", Family: models.VILA,
		Source:  "VILA CVPR'24 / arXiv 2312.07533 §2–§4 and appendix [P]; NVlabs/VILA v1.0 scripts/v1_5/paper/{1_mm_align,2_pretrain_mmc4_coyo,3_sft}.sh [C]",
		Aliases: map[string][]string{"projector": {"mm_projector"}, "vit": {"vit"}},
		Stages: []StageSpec{
			{
				Name: "align",
				// Stage 0: only the projector trains, on image-caption
				// pairs, loss on the caption (LLaVA preprocess_plain).
				Source:      "recipes.md §4 stage0_projector_initialization: ViT and LLM frozen, projector trains [P]; image-caption pairs [C]; lr 1e-3, wd 0, warmup 3%, cosine [C] 1_mm_align.sh",
				Trainable:   []string{"mm_projector"},
				Kinds:       []shard.Kind{shard.KindImageText},
				Format:      FormatLLaVA,
				Losses:      map[string]float64{"lm": 1},
				Normaliser:  PerToken,
				WarmupRatio: 0.03,
				Hyper:       api.Hyperparameters{LR: f64(1e-3), MinLR: f64(0), Schedule: str("cosine"), WeightDecay: f64(0)},
				Eval:        EvalCaption,
			},
			{
				Name: "pretrain",
				// Stage 1: the LLM trains with the projector (VILA's
				// central finding: a frozen LLM loses in-context learning)
				// on interleaved documents blended with pairs at ≈1:1
				// images (MMC4 + COYO).
				Source:      "recipes.md §4 stage1_visual_language_pretraining: LLM + projector train, ViT frozen [P]; MMC4 interleaved + COYO pairs ≈1:1 images [P]; lr 5e-5, wd 0, warmup 3%, cosine [C] 2_pretrain_mmc4_coyo.sh",
				Trainable:   []string{"mm_projector", "llm"},
				Kinds:       []shard.Kind{shard.KindInterleaved, shard.KindImageText},
				Format:      FormatLLaVA,
				Losses:      map[string]float64{"lm": 1},
				Normaliser:  PerToken,
				WarmupRatio: 0.03,
				Hyper:       api.Hyperparameters{LR: f64(5e-5), MinLR: f64(0), Schedule: str("cosine"), WeightDecay: f64(0)},
				Eval:        EvalCaption,
			},
			{
				Name: "sft",
				// Stage 2: joint SFT, visual instructions mixed with
				// text-only instructions (FLAN, "joint SFT" §3.3), loss on
				// the answers.
				Source:    "recipes.md §4 stage2_joint_sft: LLM + projector train [P]; visual SFT + 1M text-only FLAN instructions [P] §3.3; lr 2e-5, wd 0, warmup 3%, cosine [C] 3_sft.sh",
				Trainable: []string{"mm_projector", "llm"},
				Kinds:     []shard.Kind{shard.KindConversation, shard.KindText},
				// Visual SFT joined by text-only FLAN instructions (1M at
				// full scale next to the visual blend).
				Mix:         map[shard.Kind]float64{shard.KindConversation: 0.6, shard.KindText: 0.4},
				Format:      FormatLLaVA,
				Losses:      map[string]float64{"lm": 1},
				Normaliser:  PerToken,
				WarmupRatio: 0.03,
				Hyper:       api.Hyperparameters{LR: f64(2e-5), MinLR: f64(0), Schedule: str("cosine"), WeightDecay: f64(0)},
				Eval:        EvalCaption,
			},
		},
	})
}
