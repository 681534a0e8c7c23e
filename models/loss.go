package models

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/loomtrain/loom/kernels"
)

// LossTerms returns the loss terms a model of this configuration computes,
// with the papers' weights, which Forward uses for every term that
// Config.LossWeights does not set:
//
//   - BLIP-2 stage 1: itc, itm, itg, 1 each (LAVIS Blip2Qformer.forward
//     returns loss_itc + loss_itm + loss_lm);
//   - LWM: ce_text, ce_vision, 0.5 each (LWM train.py:
//     0.5·CE_vision + 0.5·CE_text);
//   - VQGAN: recon, vq, 1 each (vq already holds β·commitment);
//   - every other model: lm, 1.
func (c Config) LossTerms() map[string]float64 {
	switch {
	case c.Family == BLIP2 && c.Stage == 1:
		return map[string]float64{"itc": 1, "itm": 1, "itg": 1}
	case c.Family == LWM:
		return map[string]float64{"ce_text": 0.5, "ce_vision": 0.5}
	case c.Family == VQGAN:
		return map[string]float64{"recon": 1, "vq": 1}
	}
	return map[string]float64{"lm": 1}
}

// LossWeight is the weight Forward gives term name: Config.LossWeights'
// value, or the paper's (LossTerms).
func (c Config) LossWeight(name string) float64 {
	if w, ok := c.LossWeights[name]; ok {
		return w
	}
	return c.LossTerms()[name]
}

// validateLossWeights checks LossWeights against the family's terms.
func (c Config) validateLossWeights() error {
	terms := c.LossTerms()
	names := make([]string, 0, len(c.LossWeights))
	for k := range c.LossWeights {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		w := c.LossWeights[k]
		if _, ok := terms[k]; !ok {
			return fmt.Errorf("loss_weights.%s: %s computes %s", k, c.describe(), termList(terms))
		}
		if !(w >= 0) || math.IsInf(w, 0) {
			return fmt.Errorf("loss_weights.%s: %v: want a finite weight >= 0", k, w)
		}
	}
	for k := range terms {
		if c.LossWeight(k) > 0 {
			return nil
		}
	}
	return fmt.Errorf("loss_weights: every term of %s (%s) has weight 0", c.describe(), termList(terms))
}

func (c Config) describe() string {
	if c.Family == BLIP2 {
		return fmt.Sprintf("%s stage %d", c.Family, c.Stage)
	}
	return string(c.Family)
}

func termList(terms map[string]float64) string {
	names := make([]string, 0, len(terms))
	for k := range terms {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// lossSum assembles a model's loss Σ wᵢ·termᵢ on the tape, in the order
// the terms are added, and reports every term's value.
type lossSum struct {
	tp    *kernels.Tape
	cfg   Config
	total *kernels.Tensor
	terms map[string]float32
	parts map[string]*kernels.Tensor
}

func newLossSum(tp *kernels.Tape, c Config) *lossSum {
	return &lossSum{tp: tp, cfg: c, terms: map[string]float32{}, parts: map[string]*kernels.Tensor{}}
}

// add reports term name and adds it, weighted, to the loss (a weight of 1
// adds the term itself; a weight of 0 leaves it out of the loss).
func (s *lossSum) add(name string, t *kernels.Tensor) {
	s.terms[name] = t.Item()
	s.parts[name] = t
	w := s.cfg.LossWeight(name)
	if w == 0 {
		return
	}
	if w != 1 {
		t = s.tp.Scale(t, float32(w))
	}
	if s.total == nil {
		s.total = t
	} else {
		s.total = s.tp.Add(s.total, t)
	}
}

// output returns the Output, or an error when no term entered the loss.
func (s *lossSum) output() (Output, error) {
	if s.total == nil {
		if len(s.terms) == 0 {
			return Output{}, fmt.Errorf("batch: loss: no token is trained")
		}
		return Output{}, fmt.Errorf("batch: loss: the terms this batch has (%s) all have weight 0", termList(toF64(s.terms)))
	}
	s.terms["loss"] = s.total.Item()
	return Output{Loss: s.total, Terms: s.terms, Parts: s.parts}, nil
}

func toF64(m map[string]float32) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k] = float64(v)
	}
	return out
}
