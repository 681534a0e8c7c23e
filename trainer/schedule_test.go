package trainer

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/loomtrain/loom/shard"
)

func TestScheduleLR(t *testing.T) {
	for _, tc := range []struct {
		sc   Schedule
		step int64
		want float64
	}{
		{Schedule{Kind: "constant", Peak: 1, Warmup: 4, Steps: 10}, 0, 0.25},
		{Schedule{Kind: "constant", Peak: 1, Warmup: 4, Steps: 10}, 3, 1},
		{Schedule{Kind: "constant", Peak: 1, Warmup: 4, Steps: 10}, 9, 1},
		{Schedule{Kind: "cosine", Peak: 1, Min: 0.1, Warmup: 0, Steps: 11}, 0, 1},
		{Schedule{Kind: "cosine", Peak: 1, Min: 0.1, Warmup: 0, Steps: 11}, 5, 0.55},
		{Schedule{Kind: "cosine", Peak: 1, Min: 0.1, Warmup: 0, Steps: 11}, 10, 0.1},
		{Schedule{Kind: "cosine", Peak: 1, Min: 0.1, Warmup: 2, Steps: 12}, 1, 1},
		{Schedule{Kind: "cosine", Peak: 1, Min: 0.1, Warmup: 2, Steps: 12}, 11, 0.1},
		{Schedule{Kind: "linear", Peak: 2, Min: 0, Warmup: 0, Steps: 5}, 2, 1},
		{Schedule{Kind: "cosine", Peak: 1, Min: 0.5, Warmup: 0, Steps: 1}, 0, 1},
		{Schedule{Kind: "cosine", Peak: 1, Min: 0.5, Warmup: 0, Steps: 3}, 99, 0.5},
	} {
		if got := tc.sc.LR(tc.step); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%+v.LR(%d) = %v, want %v", tc.sc, tc.step, got, tc.want)
		}
	}
}

// TestScheduleCosineReference checks the cosine schedule at every step
// against the textbook loop (linear warmup, then half a cosine period).
func TestScheduleCosineReference(t *testing.T) {
	sc := Schedule{Kind: "cosine", Peak: 3e-4, Min: 3e-5, Warmup: 7, Steps: 50}
	for s := int64(0); s < sc.Steps; s++ {
		var want float64
		if s < sc.Warmup {
			want = sc.Peak * float64(s+1) / float64(sc.Warmup)
		} else {
			decay := float64(s-sc.Warmup) / float64(sc.Steps-sc.Warmup-1)
			want = sc.Min + 0.5*(sc.Peak-sc.Min)*(1+math.Cos(math.Pi*decay))
		}
		if got := sc.LR(s); math.Abs(got-want) > 1e-15 {
			t.Errorf("LR(%d) = %v, want %v", s, got, want)
		}
	}
}

func TestScheduleValidate(t *testing.T) {
	for _, tc := range []struct {
		sc   Schedule
		want string
	}{
		{Schedule{Kind: "step", Peak: 1}, "schedule"},
		{Schedule{Kind: "cosine", Peak: 0}, "lr"},
		{Schedule{Kind: "cosine", Peak: 1, Min: 2}, "min_lr"},
		{Schedule{Kind: "cosine", Peak: 1, Warmup: -1}, "warmup_steps"},
		{Schedule{Kind: "cosine", Peak: 1, Min: 0.5, Warmup: 3, Steps: 9}, ""},
	} {
		err := tc.sc.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.HasPrefix(err.Error(), tc.want)) {
			t.Errorf("%+v.Validate() = %v, want an error starting %q", tc.sc, err, tc.want)
		}
	}
}

func TestNoDecay(t *testing.T) {
	for _, tc := range []struct {
		name  string
		shape []int
		want  bool
	}{
		{"llm.model.layers.0.mlp.up_proj.weight", []int{32, 16}, false},
		{"llm.model.layers.0.self_attn.q_proj.bias", []int{16}, true},
		{"llm.model.layers.0.input_layernorm.weight", []int{16}, true},
		{"llm.model.norm.weight", []int{16}, true},
		{"llm.model.embed_tokens.weight", []int{267, 16}, true},
		{"llm.model.vision_embed_tokens.weight", []int{40, 16}, true},
		{"llm.lm_head.weight", []int{267, 16}, false},
		{"qformer.query_tokens", []int{1, 4, 16}, true},
		{"qformer.embeddings.word_embeddings.weight", []int{267, 16}, true},
		{"qformer.layer.0.attention.output.LayerNorm.weight", []int{16}, true},
		{"qformer.temp", []int{1}, true},
		{"ln_vision.weight", []int{16}, true},
		{"vit.embeddings.position_embedding.weight", []int{17, 16}, true},
		{"visual.attn_pool.query", []int{4, 16}, true},
		{"visual.proj", []int{16, 16}, false},
		{"mm_projector.0.weight", []int{16, 16}, false},
	} {
		if got := NoDecay(tc.name, tc.shape); got != tc.want {
			t.Errorf("NoDecay(%q, %v) = %v, want %v", tc.name, tc.shape, got, tc.want)
		}
	}
}

// TestPackRowsMatchesShardPack: the trainer's packer (which carries the
// vision flags) lays tokens, loss flags and segments out as shard.Pack,
// the reference, does.
func TestPackRowsMatchesShardPack(t *testing.T) {
	for _, tc := range []struct {
		lens   []int
		length int
	}{
		{[]int{3, 4, 2, 7, 1}, 8}, {[]int{10, 3}, 8}, {[]int{1, 1, 1, 1}, 2}, {[]int{5}, 5},
	} {
		var rows []row
		var in []shard.PackInput
		for i, n := range tc.lens {
			r := row{ID: fmt.Sprint(i)}
			for k := 0; k < n; k++ {
				r.Tokens = append(r.Tokens, int32(10*i+k))
				r.Loss = append(r.Loss, k%2 == 0)
			}
			rows = append(rows, r)
			in = append(in, shard.PackInput{Tokens: r.Tokens, Loss: r.Loss})
		}
		got := packRows(rows, tc.length)
		want, err := shard.Pack(in, tc.length, -1)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("packRows(%v, %d): %d rows, shard.Pack %d", tc.lens, tc.length, len(got), len(want))
		}
		for i := range got {
			for k, tok := range got[i].Tokens {
				if tok != want[i].Tokens[k] || got[i].segments[k] != want[i].SegmentIDs[k] || got[i].Loss[k] != (want[i].LossWeights[k] > 0) {
					t.Errorf("packRows(%v, %d) row %d token %d: (%d, seg %d, loss %v), shard.Pack (%d, seg %d, weight %v)", tc.lens, tc.length, i, k,
						tok, got[i].segments[k], got[i].Loss[k], want[i].Tokens[k], want[i].SegmentIDs[k], want[i].LossWeights[k])
				}
			}
			for k := len(got[i].Tokens); k < len(want[i].Tokens); k++ {
				if want[i].SegmentIDs[k] != 0 {
					t.Errorf("packRows(%v, %d) row %d ends at %d, shard.Pack has token %d of segment %d", tc.lens, tc.length, i, len(got[i].Tokens), k, want[i].SegmentIDs[k])
				}
			}
		}
	}
}

func TestTrainedTokens(t *testing.T) {
	for _, tc := range []struct {
		r    row
		want int
	}{
		{row{Tokens: make([]int32, 5)}, 4},
		{row{Tokens: make([]int32, 5), Prefixed: true}, 5},
		{row{Tokens: make([]int32, 4), Loss: []bool{true, false, true, true}}, 2},
		{row{Tokens: make([]int32, 6), Loss: fill(6, true), segments: []int32{1, 1, 1, 2, 2, 3}}, 3},
	} {
		if got := trainedTokens(tc.r); got != tc.want {
			t.Errorf("trainedTokens(loss %v, segments %v, prefixed %v) = %d, want %d", tc.r.Loss, tc.r.segments, tc.r.Prefixed, got, tc.want)
		}
	}
}

func ExampleSchedule_LR() {
	sc := Schedule{Kind: "cosine", Peak: 1e-4, Min: 1e-5, Warmup: 2, Steps: 6}
	for s := int64(0); s < sc.Steps; s++ {
		fmt.Printf("%.3g ", sc.LR(s))
	}
	fmt.Println()
	// Output: 5e-05 0.0001 0.0001 7.75e-05 3.25e-05 1e-05
}
