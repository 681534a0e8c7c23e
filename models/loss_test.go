package models

import (
	"math"
	"strings"
	"testing"

	"github.com/loomtrain/loom/kernels"
)

// gradsWith runs one forward and backward of a tiny model of family f
// (parameters from seed 11, batch tinyBatch(…, 2)) with the given loss
// weights and returns the output and every trainable gradient by name
// (nil where no gradient reached).
func gradsWith(t *testing.T, f Family, w map[string]float64) (Output, map[string][]float32) {
	t.Helper()
	c, _ := Preset(f, "tiny")
	c.LossWeights = w
	m, err := New(c, 11)
	if err != nil {
		t.Fatalf("New(%s, loss weights %v): %v", f, w, err)
	}
	tp := kernels.NewTape()
	out, err := m.Forward(tp, tinyBatch(t, c, 2))
	if err != nil {
		t.Fatalf("%s Forward with loss weights %v: %v", f, w, err)
	}
	tp.Backward(out.Loss)
	g := map[string][]float32{}
	for _, p := range m.Params().Trainable() {
		g[p.Name] = p.Grad
	}
	return out, g
}

// relDiff is ‖a − b‖ / ‖b‖ over every tensor (nil counts as zero).
func relDiff(a, b map[string][]float32) float64 {
	var num, den float64
	for name := range b {
		x, y := a[name], b[name]
		for i := range max(len(x), len(y)) {
			var u, v float64
			if i < len(x) {
				u = float64(x[i])
			}
			if i < len(y) {
				v = float64(y[i])
			}
			num += (u - v) * (u - v)
			den += v * v
		}
	}
	return math.Sqrt(num) / math.Max(math.Sqrt(den), 1e-30)
}

// combine returns Σ cᵢ·gᵢ.
func combine(coef []float64, gs ...map[string][]float32) map[string][]float32 {
	out := map[string][]float32{}
	for k, g := range gs {
		for name, v := range g {
			if v == nil {
				continue
			}
			if out[name] == nil {
				out[name] = make([]float32, len(v))
			}
			for i := range v {
				out[name][i] += float32(coef[k] * float64(v[i]))
			}
		}
	}
	return out
}

// TestLossWeights: the loss is Σ wᵢ·termᵢ, so the gradient is linear in
// the weights. Doubling one term's weight adds that term's own gradient
// once more (BLIP-2 ITM, LWM CE_vision); a weight of 0 removes the term
// (the parameters only it reaches get no gradient, and the gradient is
// the other terms'); scaling every weight by 2 doubles the gradient bit for
// bit (a power of two commutes with rounding).
func TestLossWeights(t *testing.T) {
	type gw = map[string]float64
	for _, tc := range []struct {
		family                Family
		base, twice, only     gw // only: the doubled term alone
		zero, rest1, rest2    gw // zero: one term removed; rest1 + rest2 = the others
		scaled, scaledBase    gw // scaled = 2 × scaledBase
		onlyByZero, zeroTerms string
	}{
		{family: BLIP2,
			base: gw{}, twice: gw{"itm": 2}, only: gw{"itc": 0, "itm": 1, "itg": 0},
			zero: gw{"itg": 0}, rest1: gw{"itc": 1, "itm": 0, "itg": 0}, rest2: gw{"itc": 0, "itm": 1, "itg": 0},
			scaled: gw{"itc": 2, "itm": 2, "itg": 2}, scaledBase: gw{}, zeroTerms: "itg"},
		{family: LWM,
			base: gw{}, twice: gw{"ce_vision": 1}, only: gw{"ce_text": 0, "ce_vision": 0.5},
			zero: gw{"ce_vision": 0}, rest1: gw{"ce_text": 0.5, "ce_vision": 0}, rest2: nil,
			scaled: gw{"ce_text": 1, "ce_vision": 1}, scaledBase: gw{}, onlyByZero: "llm.vision_head.weight", zeroTerms: "ce_vision"},
	} {
		t.Run(string(tc.family), func(t *testing.T) {
			_, gBase := gradsWith(t, tc.family, tc.base)
			outTwice, gTwice := gradsWith(t, tc.family, tc.twice)
			_, gOnly := gradsWith(t, tc.family, tc.only)
			want := combine([]float64{1, 1}, gBase, gOnly)
			if d := relDiff(gTwice, want); d > 1e-5 {
				t.Errorf("%s weights %v: gradient differs from weights %v plus the term alone (%v) by %.3g relative, want ≤ 1e-5", tc.family, tc.twice, tc.base, tc.only, d)
			}
			// The reported loss is Σ w·term.
			var total float64
			for name, part := range outTwice.Parts {
				c, _ := Preset(tc.family, "tiny")
				c.LossWeights = tc.twice
				total += c.LossWeight(name) * float64(part.Item())
			}
			if got := float64(outTwice.Loss.Item()); math.Abs(got-total) > 1e-5*math.Abs(total) {
				t.Errorf("%s weights %v: Loss = %v, Σ w·Parts = %v", tc.family, tc.twice, got, total)
			}

			outZero, gZero := gradsWith(t, tc.family, tc.zero)
			parts := []map[string][]float32{}
			for _, w := range []gw{tc.rest1, tc.rest2} {
				if w != nil {
					_, g := gradsWith(t, tc.family, w)
					parts = append(parts, g)
				}
			}
			if d := relDiff(gZero, combine([]float64{1, 1}[:len(parts)], parts...)); d > 1e-5 {
				t.Errorf("%s weights %v: gradient differs from the other terms' by %.3g relative", tc.family, tc.zero, d)
			}
			if tc.onlyByZero != "" && gZero[tc.onlyByZero] != nil {
				t.Errorf("%s weights %v: %s got a gradient, though only the removed term reaches it", tc.family, tc.zero, tc.onlyByZero)
			}
			if _, ok := outZero.Terms[tc.zeroTerms]; ok && tc.family == BLIP2 {
				t.Errorf("%s weights %v: term %s reported, though its pass is skipped", tc.family, tc.zero, tc.zeroTerms)
			}

			_, gScaled := gradsWith(t, tc.family, tc.scaled)
			_, gScaledBase := gradsWith(t, tc.family, tc.scaledBase)
			for name, g := range gScaledBase {
				for i := range g {
					if gScaled[name][i] != 2*g[i] {
						t.Fatalf("%s weights %v: %s.Grad[%d] = %v, want exactly 2 × %v", tc.family, tc.scaled, name, i, gScaled[name][i], g[i])
					}
				}
			}
		})
	}
}

// TestLossWeightsValidate: Config.Validate refuses weights for terms the
// family does not compute, negative or infinite weights, and all zeros,
// naming the field.
func TestLossWeightsValidate(t *testing.T) {
	for _, tc := range []struct {
		family Family
		w      map[string]float64
		want   string
	}{
		{BLIP2, map[string]float64{"lm": 1}, "loss_weights.lm: blip2 stage 1 computes itc, itg, itm"},
		{LWM, map[string]float64{"ce_text": -1}, "loss_weights.ce_text: -1: want a finite weight >= 0"},
		{LWM, map[string]float64{"ce_vision": math.Inf(1)}, "loss_weights.ce_vision: +Inf"},
		{LWM, map[string]float64{"ce_vision": math.NaN()}, "loss_weights.ce_vision: NaN"},
		{LLaVA, map[string]float64{"lm": 0}, "loss_weights: every term of llava (lm) has weight 0"},
	} {
		c, _ := Preset(tc.family, "tiny")
		c.LossWeights = tc.w
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%s with loss weights %v) = %v, want an error containing %q", tc.family, tc.w, err, tc.want)
		}
	}
}
