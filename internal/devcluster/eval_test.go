package devcluster

import (
	"strings"
	"testing"

	"github.com/loomtrain/loom/trainer"
)

// TestVerdict: retrieval at 3x chance, or a halved caption loss, is
// learning; neither is not, and the line says what to change.
// TestVerdict: retrieval at 3x chance either way is learning; a halved
// caption loss with retrieval at chance is the captions' language only,
// and the line says so (issue 15: LWM's verdict said "learned to caption"
// with retrieval at chance and exact match 0.02); neither is not
// learning, and the line says what to change.
func TestVerdict(t *testing.T) {
	res := func(t2i, i2t, loss, exact float64) trainer.EvalResult {
		return trainer.EvalResult{Retrieval: t2i, ImageToText: i2t, Chance: 0.02, CaptionLoss: loss, ExactMatch: exact}
	}
	untrained := res(0.02, 0.02, 5.6, 0)
	for _, tc := range []struct {
		stages []stageEval
		want   string
	}{
		{[]stageEval{{"representation", res(0.38, 0.3, 0.96, 0.3)}, {"generative", res(0.02, 0.02, 3, 0)}},
			"the model learned: best text→image R@1 0.380 (stage representation) is 19.0x chance, best image→text R@1 0.300 (stage representation) 15.0x; held-out caption loss 5.600 untrained → 0.960 (stage representation, the lowest), exact match there 0.30"},
		{[]stageEval{{"sft", res(0.04, 0.1, 0.8, 0.1)}}, "the model learned: "},
		{[]stageEval{{"text-32k", res(0.04, 0.02, 3.3, 0)}, {"chat-32k", res(0.02, 0.02, 0.76, 0.02)}},
			"the model learned the captions' language, NOT yet to tell images apart (caption loss halved, retrieval under 3x chance); train longer (--first-steps, --steps) to see retrieval rise: best text→image R@1 0.040 (stage text-32k) is 2.0x chance, best image→text R@1 0.020 (stage text-32k) 1.0x; held-out caption loss 5.600 untrained → 0.760 (stage chat-32k, the lowest), exact match there 0.02"},
		{[]stageEval{{"align", res(0.04, 0.02, 5.5, 0)}}, "NOT clearly learned"},
	} {
		if got := verdict(untrained, tc.stages); !strings.HasPrefix(got, tc.want) {
			t.Errorf("verdict(%v, %v)\n got %q\nwant it to start with %q", untrained, tc.stages, got, tc.want)
		}
	}
}
