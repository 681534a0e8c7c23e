package lossline

import "testing"

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		losses, weights map[string]float64
		want            string
	}{
		// LWM's text stages weigh ce_text by 0.5: the total is half the
		// term, and the line says so (issue 15).
		{map[string]float64{"loss": 1.5234, "ce_text": 3.047}, map[string]float64{"ce_text": 0.5}, "loss 1.5234 = 0.5×ce_text 3.047"},
		{map[string]float64{"loss": 2.678, "ce_text": 2.688, "ce_vision": 2.623}, map[string]float64{"ce_text": 0.5, "ce_vision": 0.5},
			"loss 2.6780 ≈ 0.5×ce_text 2.688 + 0.5×ce_vision 2.623"},
		{map[string]float64{"loss": 3, "itc": 1, "itm": 1, "itg": 1, "acc": 0.5}, map[string]float64{"itc": 1, "itm": 1, "itg": 1},
			"loss 3.0000 = 1×itc 1.000 + 1×itg 1.000 + 1×itm 1.000; acc 0.500"},
		{map[string]float64{"loss": 1.42, "recon": 1.09, "vq": 0.36}, nil, "loss 1.4200 (recon 1.090 vq 0.360)"},
		{map[string]float64{"loss": 2}, map[string]float64{"lm": 1}, "loss 2.0000"},
		{nil, nil, "-"},
	} {
		if got := Format(tc.losses, tc.weights); got != tc.want {
			t.Errorf("Format(%v, %v)\n got %q\nwant %q", tc.losses, tc.weights, got, tc.want)
		}
	}
}
