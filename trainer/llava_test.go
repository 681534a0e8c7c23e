package trainer

import (
	"context"
	"strings"
	"testing"

	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
)

// LLaVA-1.5's finetune stage reads text-only conversations as mix665k's
// ShareGPT part (a LLaVA JSON record without "image"): no image, the loss
// on the assistant turns only; the model trains on a batch that mixes
// them with visual conversations.
func TestLLaVATextOnlyConversation(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	m := testManifest(t, "llava", 1, 4)
	m.Stages = m.Stages[1:] // finetune, by name, from the seed
	r, err := NewRun(ctx, d.job(m, 0, shard.NewMemStore()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.stage.Spec.Name != "finetune" {
		t.Fatalf("stage %s", r.stage.Spec.Name)
	}
	b := r.builder
	s := shard.Sample{ID: "sharegpt-1", Turns: []shard.Turn{
		{Role: "user", Text: "Name a colour."},
		{Role: "assistant", Text: "Blue.", Loss: true},
	}}
	rw, err := b.build(shard.KindConversation, s, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rw.Images) != 0 {
		t.Errorf("%d images in a text-only conversation", len(rw.Images))
	}
	var trained strings.Builder
	for i, id := range rw.Tokens {
		if rw.Loss[i] && id != r.cfg.Special.EOS {
			piece, err := b.tok.Decode([]int{int(id)})
			if err != nil {
				t.Fatal(err)
			}
			trained.WriteString(piece)
		}
	}
	if got := strings.TrimSpace(trained.String()); got != "Blue." {
		t.Errorf("trained text %q, want the assistant turn %q", got, "Blue.")
	}
	// In a batch with a visual conversation, the model trains on both.
	vis, err := b.build(shard.KindConversation, synth.Sample(shard.KindConversation, 3, 1), 1)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := assemble([]row{rw, vis}, 1)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.model.Forward(nil, batch)
	if err != nil {
		t.Fatalf("forward on a text-only and a visual conversation: %v", err)
	}
	if l := out.Loss.Item(); !(l > 0) || len(vis.Images) != 1 {
		t.Errorf("loss %v with %d images in the visual row", l, len(vis.Images))
	}
}
