package trainer

import (
	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/models/qformer"
	"github.com/loomtrain/loom/shard"
)

// BLIP-2 (Li et al. 2023, arXiv 2301.12597v3; LAVIS@506965b), recipes.md §1.
func init() {
	register(&Recipe{
		Name: "blip2", Family: models.BLIP2,
		Source:  "BLIP-2 arXiv 2301.12597v3 §3.1–3.4 [P]; salesforce/LAVIS@506965b blip2_qformer.py, blip2_opt.py, pretrain_stage{1,2}.yaml [C]",
		Aliases: map[string][]string{"proj": {"llm_proj"}, "vision_proj": {"qformer.vision_proj"}, "text_proj": {"qformer.text_proj"}},
		Stages: []StageSpec{
			{
				Name: "representation",
				// §3.2: the Q-Former learns from a frozen image encoder with
				// ITC + ITM + ITG, equally weighted (blip2_qformer.forward);
				// ln_vision is new and trains (blip2.py init_vision_encoder).
				Source:     "recipes.md §1 stage1_representation_learning: frozen ViT [P][C]; losses ITC+ITM+ITG [P][C]; AdamW β=(0.9,0.98), wd 0.05, peak 1e-4 cosine, warmup 2k of 250k [P]; min_lr 1e-5 [C]; RandomResizedCrop(0.5–1)+flip [P][C]",
				ModelStage: 1,
				Trainable:  []string{"ln_vision", "qformer"},
				Kinds:      []shard.Kind{shard.KindImageText},
				Format:     FormatQFormerCaption,
				Losses:     map[string]float64{"itc": 1, "itm": 1, "itg": 1},
				Normaliser: PerSample,
				Augment:    true,
				// 2k of 250k steps.
				WarmupRatio: 0.008,
				Hyper:       api.Hyperparameters{LR: f64(1e-4), MinLR: f64(1e-5), Schedule: str("cosine"), WeightDecay: f64(0.05), Beta1: f64(0.9), Beta2: f64(0.98)},
				Eval:        EvalRetrieval,
			},
			{
				Name: "generative",
				// §3.3: the Q-Former's query outputs, projected, are soft
				// prompts of a frozen LLM; LM loss on the caption; the
				// text side of the Q-Former is removed (blip2_opt.__init__).
				Source:     "recipes.md §1 stage2_generative_learning: frozen ViT and LLM [P][C]; init from stage 1 [C]; Q-Former text side removed [C]; LM loss on the caption, no loss on the queries [P][C]; peak 1e-4, min 5e-5, warmup 2k of 80k [P]",
				ModelStage: 2,
				Trainable:  []string{"ln_vision", "qformer", "llm_proj"},
				InitOnly:   []string{"vit.*", "ln_vision.*", "qformer.*"},
				InitSkip:   qformer.TextSidePatterns("qformer"),
				Kinds:      []shard.Kind{shard.KindImageText},
				Format:     FormatSoftPromptCaption,
				Losses:     map[string]float64{"lm": 1},
				Normaliser: PerToken,
				Augment:    true,
				// 2k of 80k steps.
				WarmupRatio: 0.025,
				Hyper:       api.Hyperparameters{LR: f64(1e-4), MinLR: f64(5e-5), Schedule: str("cosine"), WeightDecay: f64(0.05), Beta1: f64(0.9), Beta2: f64(0.98)},
				Eval:        EvalCaption,
			},
		},
	})
}
