package devcluster

import (
	"strings"
	"testing"

	"github.com/loomtrain/loom/trainer"
)

// TestVerdict: retrieval at 3x chance, or a halved caption loss, is
// learning; neither is not, and the line says what to change.
func TestVerdict(t *testing.T) {
	res := func(r, loss float64) trainer.EvalResult {
		return trainer.EvalResult{Retrieval: r, Chance: 0.02, CaptionLoss: loss}
	}
	untrained := res(0.02, 5.6)
	for _, tc := range []struct {
		stages []stageEval
		want   string
	}{
		{[]stageEval{{"representation", res(0.38, 0.96)}, {"generative", res(0.02, 3)}}, "the model learned: best text→image R@1 0.380 (stage representation) is 19.0x chance; held-out caption loss 5.600 untrained → 0.960 (stage representation, the lowest)"},
		{[]stageEval{{"text-32k", res(0.04, 3.3)}, {"chat-32k", res(0.02, 0.76)}}, "the model learned to caption (retrieval under 3x chance): best text→image R@1 0.040 (stage text-32k) is 2.0x chance; held-out caption loss 5.600 untrained → 0.760 (stage chat-32k, the lowest)"},
		{[]stageEval{{"align", res(0.04, 5.5)}}, "NOT clearly learned"},
	} {
		if got := verdict(untrained, tc.stages); !strings.HasPrefix(got, tc.want) {
			t.Errorf("verdict(%v, %v) = %q, want it to start with %q", untrained, tc.stages, got, tc.want)
		}
	}
}
