package trainer

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/tokenizer"
	"github.com/loomtrain/loom/shard"
)

// captionTemplates are InstructBLIP's instruction templates for image
// captioning (arXiv 2305.06500 appendix, the templates table, "<Image>"
// dropped: the image enters as the Q-Former's soft prompts). A pair takes
// one at random per sample, as the paper turns each held-in dataset into
// instructions with its task's templates.
var captionTemplates = []string{
	"A short image caption:",
	"A short image description:",
	"A photo of",
	"An image that shows",
	"Write a short description for the image.",
	"Write a description for the photo.",
	"Provide a description of what is presented in the photo.",
	"Briefly describe the content of the image.",
	"Can you briefly explain what you see in the image?",
	"Could you use a few words to describe what you perceive in the photo?",
	"Please provide a short depiction of the picture.",
	"Using language, provide a short account of the image.",
	"Use a few words to illustrate what is happening in the picture.",
}

// The LAVIS blip2_vicuna_instruct limits: max_txt_len (the instruction, in
// the Q-Former and in the LLM, truncated on the left) and
// max_output_txt_len (the answer, truncated on the right).
const (
	instructionMaxLen = 128
	answerMaxLen      = 256
)

// buildInstruction is FormatInstruction: one image, the instruction for
// the Q-Former (Row.Instruction) and the LLM row BOS + prompt (no loss) +
// answer + EOS (loss), after the soft prompts (Prefixed).
func (b *rowBuilder) buildInstruction(kind shard.Kind, s shard.Sample, r row, rng *rand.Rand) (row, error) {
	var img *shard.Image
	var instr []string // the user text the Q-Former reads
	var segs []seg     // the LLM row after BOS
	switch kind {
	case shard.KindImageText:
		if s.Image == nil {
			return r, fmt.Errorf("sample %s: image: missing", s.ID)
		}
		img = s.Image
		t := captionTemplates[0] // evaluation: every pair under the same instruction
		if !b.understand {
			t = captionTemplates[rng.IntN(len(captionTemplates))]
		}
		instr = []string{t}
		segs = []seg{{text: t + " ", loss: false}, {text: s.Caption, loss: true}}
	case shard.KindConversation:
		// InstructBLIP puts one image in front of the LLM (its query
		// outputs); the <image> placeholders mark where LLaVA would put it.
		if len(s.Images) != 1 {
			return r, fmt.Errorf("sample %s: images: %d, InstructBLIP reads conversations with exactly one image", s.ID, len(s.Images))
		}
		img = &s.Images[0]
		answered := false
		for i, t := range s.Turns {
			text := strings.TrimSpace(strings.ReplaceAll(t.Text, tokenizer.Image, ""))
			if t.Role == "user" {
				instr = append(instr, text)
			}
			if t.Loss {
				answered = true
			}
			segs = append(segs, seg{text: t.Role + ": ", loss: false}, seg{text: text, loss: t.Loss})
			if i < len(s.Turns)-1 {
				segs = append(segs, seg{text: "\n", loss: t.Loss})
			}
		}
		if len(instr) == 0 || !answered {
			return r, fmt.Errorf("sample %s: turns: InstructBLIP needs a user turn (the instruction) and an answer with loss", s.ID)
		}
	default:
		return r, fmt.Errorf("sample %s: kind %s: InstructBLIP reads image-text pairs and conversations", s.ID, kind)
	}
	im, err := b.image(img, rng)
	if err != nil {
		return r, fmt.Errorf("sample %s: %w", s.ID, err)
	}
	r.Images = []*kernels.Tensor{im}
	sp := b.cfg.Special

	// The Q-Former's instruction: [CLS] + the user text, its last tokens
	// kept (LAVIS init_tokenizer(truncation_side="left")), within the
	// Q-Former's text positions.
	qmax := min(instructionMaxLen, b.cfg.QFormer.MaxPos)
	r.Instruction = append([]int32{sp.BOS}, keepTail(b.enc(strings.Join(instr, " ")), qmax-1)...)

	// The LLM row: the soft prompts take Queries positions of the context.
	room := b.maxLen - b.cfg.QFormer.Queries - 2 // BOS and EOS
	if room < 1 {
		return r, fmt.Errorf("sample %s: context %d tokens: no room after the %d soft prompts", s.ID, b.maxLen, b.cfg.QFormer.Queries)
	}
	r.Tokens, r.Loss = []int32{sp.BOS}, []bool{false}
	for _, sg := range segs {
		ids := b.enc(sg.text)
		// Each turn within LAVIS's limits, the row within the context.
		if sg.loss {
			ids = clip(ids, answerMaxLen)
		} else {
			ids = keepTail(ids, instructionMaxLen)
		}
		ids = clip(ids, room-(len(r.Tokens)-1))
		r.Tokens = append(r.Tokens, ids...)
		r.Loss = append(r.Loss, fill(len(ids), sg.loss)...)
	}
	r.Tokens = append(r.Tokens, sp.EOS)
	r.Loss = append(r.Loss, segs[len(segs)-1].loss)
	trained := false
	for _, l := range r.Loss {
		trained = trained || l
	}
	if !trained {
		return r, fmt.Errorf("sample %s: the instruction fills the %d-token context and leaves no answer token", s.ID, b.maxLen)
	}
	r.Prefixed = true
	return r, nil
}

// keepTail returns the last n ids.
func keepTail(ids []int32, n int) []int32 {
	if n < 0 {
		n = 0
	}
	if len(ids) > n {
		return ids[len(ids)-n:]
	}
	return ids
}
