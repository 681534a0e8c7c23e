package lossline

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Format renders losses, a progress report's map (the total under
// "loss", each term under its name), with the stage's loss weights (the
// model's loss is Σ weight·term; trainer.ResolvedStage.Losses):
//
//	loss 1.5234 = 0.5×ce_text 3.047
//	loss 2.6780 ≈ 0.5×ce_text 2.688 + 0.5×ce_vision 2.623
//
// "=" when the weighted sum of the shown terms matches the total to the
// printed precision, "≈" otherwise: each term is the mean over the
// micro-batches that have it, while the total weights micro-batches by
// their tokens or samples. Terms without a weight are listed after a
// semicolon; with no weights at all (nil), the terms are listed in
// parentheses as reported. Missing total: "-".
func Format(losses, weights map[string]float64) string {
	total, ok := losses["loss"]
	if !ok {
		if len(losses) == 0 {
			return "-"
		}
		return strings.Join(plain(losses), " ")
	}
	names := make([]string, 0, len(losses))
	for k := range losses {
		if k != "loss" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return fmt.Sprintf("loss %.4f", total)
	}
	if weights == nil {
		return fmt.Sprintf("loss %.4f (%s)", total, strings.Join(plain(without(losses, "loss")), " "))
	}
	var sum float64
	var parts, other []string
	for _, k := range names {
		w, ok := weights[k]
		if !ok {
			other = append(other, fmt.Sprintf("%s %.3f", k, losses[k]))
			continue
		}
		sum += w * losses[k]
		parts = append(parts, fmt.Sprintf("%s×%s %.3f", num(w), k, losses[k]))
	}
	if len(parts) == 0 {
		return fmt.Sprintf("loss %.4f (%s)", total, strings.Join(other, " "))
	}
	rel := "="
	if math.Abs(sum-total) > 5e-4+1e-3*math.Abs(total) {
		rel = "≈"
	}
	s := fmt.Sprintf("loss %.4f %s %s", total, rel, strings.Join(parts, " + "))
	if len(other) > 0 {
		s += "; " + strings.Join(other, " ")
	}
	return s
}

// num prints a weight without trailing zeros (0.5, 1, 0.25).
func num(w float64) string { return fmt.Sprintf("%g", w) }

func without(m map[string]float64, key string) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		if k != key {
			out[k] = v
		}
	}
	return out
}

func plain(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%s %.3f", k, m[k])
	}
	return out
}
