package trainer

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
)

// InstructBLIP starts from BLIP-2 (arXiv 2305.06500 §2.6): a BLIP-2 job's
// representation stage trains, and an InstructBLIP job starts its
// Q-Former (text side included) and ViT from that checkpoint, as its
// example manifest's init block says; ln_vision and llm_proj start from
// the seed. BLIP-2's generative stage has dropped the Q-Former's text
// side, so starting from it is refused naming the missing tensor.
func TestInstructBLIPStartsFromBLIP2(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	store := shard.NewMemStore()

	ib := testManifest(t, "instructblip", 2, 4)
	if src, ok := ib.Init["qformer"]; !ok || src.Job != "blip2-tiny" || src.Step != 2 || ib.Init["vision"] != src {
		t.Fatalf("example init block %+v: want qformer and vision from blip2-tiny at step 2 (the end of its representation stage)", ib.Init)
	}
	b2 := testManifest(t, "blip2", 2, 4)
	ref1, stage1, _ := trainThenSave(t, d.job(b2, 0, store), nil, 2)
	if ref1.Stage != 0 || ref1.Step != 2 {
		t.Fatalf("BLIP-2 checkpoint at stage %d step %d, want the representation stage's end", ref1.Stage, ref1.Step)
	}

	ib.Init = nil
	plain, err := NewRun(ctx, d.job(ib, 0, store), nil)
	if err != nil {
		t.Fatal(err)
	}
	fresh := weights(plain)
	plain.Close()

	ib.Init = map[string]api.InitSource{
		"qformer": {Job: b2.Name, Step: 2, Checkpoint: resolved(ref1)},
		"vision":  {Job: b2.Name, Step: 2, Checkpoint: resolved(ref1)},
	}
	r, err := NewRun(ctx, d.job(ib, 0, store), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := weights(r)
	nq, nText := 0, 0
	for name, w := range got {
		switch {
		case strings.HasPrefix(name, "qformer.") || strings.HasPrefix(name, "vit."):
			if !slices.Equal(w, stage1[name]) {
				t.Errorf("%s differs from the BLIP-2 representation checkpoint", name)
			}
			nq++
			if strings.Contains(name, "word_embeddings") || strings.Contains(name, ".intermediate.") {
				nText++
			}
		case strings.HasPrefix(name, "ln_vision.") || strings.HasPrefix(name, "llm_proj."):
			if !slices.Equal(w, fresh[name]) {
				t.Errorf("%s changed: only the Q-Former and the ViT start from BLIP-2", name)
			}
		}
	}
	if nq == 0 || nText == 0 {
		t.Fatalf("%d Q-Former/ViT parameters, %d of the Q-Former's text side: the instruction's path must come from BLIP-2", nq, nText)
	}
	// It trains from there, the instruction in its batches.
	if _, err := r.Step(ctx); err != nil {
		t.Fatal(err)
	}
	r.Close()

	// BLIP-2's generative stage: no text side.
	ref2, _, _ := trainThenSave(t, d.job(b2, 1, store), &ref1, 1)
	ib.Init = map[string]api.InitSource{"qformer": {Job: b2.Name, Checkpoint: resolved(ref2)}}
	if _, err := NewRun(ctx, d.job(ib, 0, store), nil); err == nil ||
		!strings.Contains(err.Error(), "init.qformer: job blip2-tiny step 3 has no tensor") || !strings.Contains(err.Error(), "qformer.embeddings.word_embeddings") {
		t.Errorf("InstructBLIP from BLIP-2's generative stage: %v, want the missing text-side tensor named", err)
	}
}

// The rows InstructBLIP trains on: the instruction goes to the Q-Former
// ([CLS] + text, its tail kept) and, after the soft prompts, to the LLM
// as BOS + prompt without loss; the answer and EOS carry the loss
// (LAVIS concat_text_input_output). Captions get a template; a
// conversation's user turns are the instruction, its assistant turns
// the answers.
func TestInstructionRows(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	m := testManifest(t, "instructblip", 1, 4)
	m.Init = nil
	r, err := NewRun(ctx, d.job(m, 0, shard.NewMemStore()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b := r.builder
	sp := r.cfg.Special
	text := func(ids []int32) string {
		var s strings.Builder
		for _, id := range ids {
			piece, err := b.tok.Decode([]int{int(id)})
			if err != nil {
				t.Fatalf("decode %d: %v", id, err)
			}
			s.WriteString(piece)
		}
		return s.String()
	}
	trained := func(rw row) string {
		var ids []int32
		for i, id := range rw.Tokens {
			if rw.Loss[i] && id != sp.EOS {
				ids = append(ids, id)
			}
		}
		return text(ids)
	}

	pair := synth.Sample(shard.KindImageText, 3, 0)
	rw, err := b.build(shard.KindImageText, pair, 5)
	if err != nil {
		t.Fatal(err)
	}
	// The LLM sees the whole template; the Q-Former its last tokens
	// within its text positions.
	qmax := min(instructionMaxLen, r.cfg.QFormer.MaxPos)
	instr := text(rw.Instruction[1:])
	tpl := ""
	for _, c := range captionTemplates {
		if strings.HasPrefix(text(rw.Tokens[1:]), c+" ") {
			tpl = c
		}
	}
	if rw.Instruction[0] != sp.BOS || tpl == "" || !strings.HasSuffix(tpl, instr) || len(rw.Instruction) != min(len(b.enc(tpl))+1, qmax) {
		t.Errorf("pair: LLM prompt %q, Q-Former instruction %q: want a caption template, and [CLS] + its last tokens (at most %d)", text(rw.Tokens), instr, qmax)
	}
	if rw.Tokens[0] != sp.BOS || rw.Loss[0] || rw.Tokens[len(rw.Tokens)-1] != sp.EOS || !rw.Loss[len(rw.Loss)-1] || !rw.Prefixed {
		t.Errorf("pair: row %v loss %v: want BOS without loss … EOS with loss, after the soft prompts", rw.Tokens, rw.Loss)
	}
	if got := strings.TrimSpace(trained(rw)); got != pair.Caption {
		t.Errorf("pair: trained text %q, want the caption %q", got, pair.Caption)
	}
	// Evaluation scores every pair under the same instruction.
	ev := *b
	ev.understand = true
	for pos := int64(0); pos < 4; pos++ {
		erw, err := ev.build(shard.KindImageText, pair, pos)
		if err != nil || text(erw.Instruction[1:]) != captionTemplates[0] {
			t.Errorf("evaluation row %d: instruction %q (%v), want %q", pos, text(erw.Instruction[1:]), err, captionTemplates[0])
		}
	}

	conv := synth.Sample(shard.KindConversation, 3, 1)
	rw, err = b.build(shard.KindConversation, conv, 6)
	if err != nil {
		t.Fatal(err)
	}
	q := text(rw.Instruction[1:])
	users := "What is in this picture? " + conv.Turns[2].Text
	if rw.Instruction[0] != sp.BOS || !strings.HasSuffix(users, q) || len(rw.Instruction) != min(len(b.enc(users))+1, qmax) {
		t.Errorf("conversation: Q-Former instruction %q, want the tail of the user turns %q without the <image> placeholder", q, users)
	}
	got := trained(rw)
	if !strings.Contains(got, "It shows") || !strings.Contains(got, "It is ") || strings.Contains(got, "What") || strings.Contains(got, "user") {
		t.Errorf("conversation: trained text %q, want the assistant turns only", got)
	}
	if len(rw.Images) != 1 {
		t.Errorf("conversation: %d images, want 1", len(rw.Images))
	}

	// The instruction keeps its last tokens within the Q-Former's
	// positions; the row stays within the context with the soft prompts.
	long := conv
	long.Turns = append([]shard.Turn{{Role: "user", Text: strings.Repeat("tell me more about it please ", 40)}}, conv.Turns...)
	rw, err = b.build(shard.KindConversation, long, 7)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rw.Instruction); n != qmax || !strings.HasSuffix(text(rw.Instruction), conv.Turns[2].Text) {
		t.Errorf("long instruction: %d Q-Former tokens ending %q, want %d ending with the last user turn", n, text(rw.Instruction), qmax)
	}
	if n := len(rw.Tokens) + r.cfg.QFormer.Queries; n > b.maxLen {
		t.Errorf("long conversation: %d positions with the soft prompts, context %d", n, b.maxLen)
	}

	// Refused, naming the sample.
	for _, c := range []struct {
		kind shard.Kind
		s    shard.Sample
		want string
	}{
		{shard.KindConversation, shard.Sample{ID: "text-only", Turns: conv.Turns}, "sample text-only: images: 0, InstructBLIP reads conversations with exactly one image"},
		{shard.KindConversation, shard.Sample{ID: "no-answer", Images: conv.Images, Turns: conv.Turns[:1]}, "sample no-answer: turns: InstructBLIP needs a user turn"},
		{shard.KindText, shard.Sample{ID: "doc", Text: "plain text"}, "sample doc: kind text: InstructBLIP reads image-text pairs and conversations"},
	} {
		if _, err := b.build(c.kind, c.s, 0); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.s.ID, err, c.want)
		}
	}

	// A batch carries the instructions; a row without one is refused.
	a, _ := b.build(shard.KindImageText, pair, 1)
	c, _ := b.build(shard.KindConversation, conv, 2)
	batch, err := assemble([]row{a, c}, 1)
	if err != nil || len(batch.Instruction) != 2 || !slices.Equal(batch.Instruction[1], c.Instruction) {
		t.Fatalf("assemble: %v, instruction %v", err, batch)
	}
	if _, err := assemble([]row{a, {ID: "bare", Tokens: []int32{1, 2}}}, 1); err == nil || !strings.Contains(err.Error(), "row bare has no instruction") {
		t.Errorf("assemble with a row without an instruction: %v", err)
	}
}
