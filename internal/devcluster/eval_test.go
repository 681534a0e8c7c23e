package devcluster

import (
	"math"
	"strings"
	"testing"

	"github.com/loomtrain/loom/trainer"
)

// TestVerdict: retrieval above chance either way (binomial, corrected
// for the stages and directions tried) is learning; a halved caption loss
// with retrieval at chance is the captions' language only, and the line
// says so (issue 15: LWM's verdict said "learned to caption" with
// retrieval at chance and exact match 0.02); neither is not learning, and
// the line says what to change.
func TestVerdict(t *testing.T) {
	res := func(n int, t2i, i2t, loss, exact float64) trainer.EvalResult {
		return trainer.EvalResult{N: n, Retrieval: t2i, ImageToText: i2t, Chance: 1 / float64(n), CaptionLoss: loss, ExactMatch: exact}
	}
	untrained := res(48, 1.0/48, 1.0/48, 5.6, 0)
	for _, tc := range []struct {
		stages []stageEval
		want   string
	}{
		// BLIP-2 stage 1: 18 of 48 pairs.
		{[]stageEval{{"representation", res(48, 18.0/48, 14.0/48, 0.96, 0.3)}, {"generative", res(48, 1.0/48, 1.0/48, 3, 0)}},
			"the model learned: best text→image R@1 0.375 (stage representation) is 18.0x chance (p "},
		// 6 of 48 image→text in one stage: p ≈ 0.0006 per test, 0.001
		// after the correction.
		{[]stageEval{{"sft", res(48, 2.0/48, 6.0/48, 0.8, 0.1)}}, "the model learned: "},
		// LWM, 8 pairs: 3 hits in the best of 9 stages is chance.
		{[]stageEval{{"text-32k", res(8, 2.0/8, 2.0/8, 5, 0.25)}, {"vision-8k", res(8, 1.0/8, 2.0/8, 2.6, 0.25)}, {"chat-32k", res(8, 1.0/8, 3.0/8, 2.36, 0.38)},
			{"text-1m", res(8, 1.0/8, 2.0/8, 3, 0.25)}, {"vision-1k", res(8, 1.0/8, 1.0/8, 2.8, 0.12)}},
			"the model learned the captions' language, NOT yet to tell images apart (caption loss halved, retrieval not above chance)"},
		{[]stageEval{{"text-32k", res(48, 2.0/48, 1.0/48, 3.3, 0)}, {"chat-32k", res(48, 1.0/48, 1.0/48, 0.76, 0.02)}},
			"the model learned the captions' language, NOT yet to tell images apart"},
		{[]stageEval{{"align", res(48, 2.0/48, 1.0/48, 5.5, 0)}}, "NOT clearly learned"},
	} {
		if got := verdict(untrained, tc.stages); !strings.HasPrefix(got, tc.want) {
			t.Errorf("verdict(%v, %v)\n got %q\nwant it to start with %q", untrained, tc.stages, got, tc.want)
		}
	}
}

func TestChanceTail(t *testing.T) {
	// Binomial(8, 1/8): P(X >= 3) = 1 - P(0) - P(1) - P(2).
	p0 := math.Pow(7.0/8, 8)
	p1 := 8 * (1.0 / 8) * math.Pow(7.0/8, 7)
	p2 := 28 * math.Pow(1.0/8, 2) * math.Pow(7.0/8, 6)
	if got, want := chanceTail(8, 3.0/8), 1-p0-p1-p2; math.Abs(got-want) > 1e-12 {
		t.Errorf("chanceTail(8, 3/8) = %v, want %v", got, want)
	}
	if got := chanceTail(8, 0); math.Abs(got-1) > 1e-12 {
		t.Errorf("chanceTail(8, 0) = %v, want 1", got)
	}
}
