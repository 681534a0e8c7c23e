package trainer

import (
	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/shard"
)

// InstructBLIP (Dai et al. 2023, arXiv 2305.06500; LAVIS
// blip2_vicuna_instruct.py), recipes.md §1 "InstructBLIP delta": BLIP-2's
// architecture with an instruction-aware Q-Former, instruction-tuned from a
// BLIP-2 model with the ViT and the LLM frozen.
func init() {
	register(&Recipe{
		Name: "instructblip", Family: models.InstructBLIP,
		Source:  "InstructBLIP arXiv 2305.06500 §2.3 (instruction-aware Q-Former), §2.4 (√size sampling), §2.6 (implementation details), appendix templates [P]; salesforce/LAVIS blip2_vicuna_instruct.py (forward, concat_text_input_output) [C]",
		Aliases: map[string][]string{"proj": {"llm_proj"}},
		// §2.6: the model is initialised from pre-trained BLIP-2: the Q-Former,
		// with its text side (the instruction enters through its word
		// embeddings and text FFNs), is BLIP-2 stage 1's, and the frozen
		// ViT the one it was trained against. BLIP-2's stage 2 drops the
		// text side, so the source is its representation stage.
		StartsFrom: []StartFrom{{Recipe: "blip2", Stage: "representation", Parts: []string{"qformer", "vision"}}},
		Stages: []StageSpec{
			{
				Name: "instruction",
				// The instruction joins the queries in the Q-Former's
				// self-attention; the query outputs, projected, are soft
				// prompts before the instruction and the answer in the
				// frozen LLM; loss on the answer only.
				Source: "recipes.md §1 InstructBLIP delta: ViT and LLM frozen, Q-Former (with its text side), queries, llm_proj and ln_vision train [C] blip2_vicuna_instruct.__init__; instruction in the Q-Former (max 128, truncation left) and as the LLM prompt, loss on text_output + eos [C] forward; AdamW β=(0.9,0.999), wd 0.05, warmup 1000 steps to 1e-5 then cosine to 0, ≤60K steps [P] (recipes.md: [U])",
				// The text FFN of the Q-Former's last layer gets no
				// gradient (models.Config.Unreached) and stays frozen.
				Trainable:  []string{"ln_vision", "qformer", "llm_proj"},
				Kinds:      []shard.Kind{shard.KindImageText, shard.KindConversation},
				Format:     FormatInstruction,
				Losses:     map[string]float64{"lm": 1},
				Normaliser: PerToken,
				// 1000 of 60K steps.
				WarmupRatio: 0.017,
				Hyper:       api.Hyperparameters{LR: f64(1e-5), MinLR: f64(0), Schedule: str("cosine"), WeightDecay: f64(0.05), Beta1: f64(0.9), Beta2: f64(0.999)},
				Eval:        EvalCaption,
			},
		},
	})
}
