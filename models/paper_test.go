package models

import (
	"math"
	"testing"

	"github.com/loomtrain/loom/models/llm"
	"github.com/loomtrain/loom/models/qformer"
	"github.com/loomtrain/loom/models/vit"
)

func within(got, want int, tol float64) bool {
	return math.Abs(float64(got)-float64(want)) <= tol*float64(want)
}

// TestPaperParamCounts checks the paper-size presets against the published
// parameter counts, within 1%, from the configs alone (nothing allocated).
func TestPaperParamCounts(t *testing.T) {
	preset := func(f Family) Config {
		c, err := Preset(f, "paper")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	b := preset(BLIP2)
	llava := preset(LLaVA)
	qwen := preset(QwenVL)
	lwm := preset(LWM)
	tests := []struct {
		what string
		got  int
		want int
		tol  float64
	}{
		// BLIP-2 §3.1: "Q-Former … contains 188M parameters" (queries included).
		{"Q-Former (stage 1, with queries and heads)", qformer.ParamCount(b.qformerConfig()), 188_000_000, 0.01},
		// LLaMA-2-7B: 6,738,415,616 (HF meta-llama/Llama-2-7b-hf).
		{"LLaMA-2-7B", llm.ParamCount(llama2_7B), 6_738_415_616, 0},
		// LLaVA-1.5-7B ≈ 7.06B (CLIP-L/336 303.5M + MLP 21M + Vicuna-7B).
		{"LLaVA-1.5-7B", ParamCount(llava), 7_060_000_000, 0.01},
		// Qwen-VL ≈ 9.6B (paper Table 1: ViT 1.9B + adapter 0.08B + LLM 7.7B).
		{"Qwen-VL", ParamCount(qwen), 9_600_000_000, 0.01},
		{"Qwen-7B LLM", llm.ParamCount(qwen7B), 7_700_000_000, 0.01},
		// The paper rounds the ViT to "1.9B"; OpenCLIP ViT-bigG/14 visual is 1.84B.
		{"Qwen-VL ViT-bigG", vit.ParamCount(clipBigG), 1_900_000_000, 0.04},
		// LWM = LLaMA-2-7B + vision embedding and vision head (8448 × 4096 each).
		{"LWM", ParamCount(lwm), 6_738_415_616 + 2*8448*4096, 0},
	}
	for _, tc := range tests {
		if !within(tc.got, tc.want, tc.tol) {
			t.Errorf("%s: ParamCount = %d, want %d within %.0f%%", tc.what, tc.got, tc.want, tc.tol*100)
		} else {
			t.Logf("%s: %d (paper %d)", tc.what, tc.got, tc.want)
		}
	}
}
