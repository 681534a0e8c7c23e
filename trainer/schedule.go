package trainer

import (
	"fmt"
	"math"
	"strings"

	"github.com/loomtrain/loom/kernels"
)

// Schedule is a learning-rate schedule: a pure function of the step.
type Schedule struct {
	Kind   string  // "cosine", "constant" or "linear"
	Peak   float64 // learning rate after warmup
	Min    float64 // floor of the cosine and linear decays
	Warmup int64   // linear warmup steps
	Steps  int64   // steps of the stage
}

// LR is the learning rate of step s (0-based within the stage): a linear
// warmup over Warmup steps to Peak ((s+1)/Warmup·Peak, as BLIP-2's and
// LLaVA's linear warmups), then constant, cosine to Min (half a period
// over the remaining steps, BLIP-2 §3.4, LLaVA/VILA scripts) or linear to
// Min.
func (sc Schedule) LR(s int64) float64 {
	if s < sc.Warmup {
		return sc.Peak * float64(s+1) / float64(sc.Warmup)
	}
	rest := sc.Steps - sc.Warmup
	if rest <= 1 {
		return sc.Peak
	}
	p := float64(s-sc.Warmup) / float64(rest-1)
	p = math.Min(math.Max(p, 0), 1)
	switch sc.Kind {
	case "cosine":
		return sc.Min + (sc.Peak-sc.Min)*0.5*(1+math.Cos(math.Pi*p))
	case "linear":
		return sc.Peak + (sc.Min-sc.Peak)*p
	}
	return sc.Peak
}

// Validate names the field at fault.
func (sc Schedule) Validate() error {
	switch sc.Kind {
	case "cosine", "constant", "linear":
	default:
		return fmt.Errorf("schedule: %q is not a schedule (cosine, constant, linear)", sc.Kind)
	}
	if !(sc.Peak > 0) || math.IsInf(sc.Peak, 0) {
		return fmt.Errorf("lr: %v, want a finite number > 0", sc.Peak)
	}
	if sc.Min < 0 || sc.Min > sc.Peak {
		return fmt.Errorf("min_lr: %v, want 0 <= min_lr <= lr (%v)", sc.Min, sc.Peak)
	}
	if sc.Warmup < 0 {
		return fmt.Errorf("warmup_steps: %d is negative", sc.Warmup)
	}
	return nil
}

// NoDecay reports whether a parameter is exempt from weight decay: biases,
// norm gains and shifts, embeddings (token, position, query tokens, class
// tokens) and scalars such as BLIP-2's temperature. This follows the
// recipes' convention (LAVIS runner_base.py: no decay for ndim < 2, "bias",
// "ln", "bn"; GPT/LLaMA practice of no decay on norms and embeddings).
func NoDecay(name string, shape []int) bool {
	if len(shape) < 2 {
		return true
	}
	last := name[strings.LastIndex(name, ".")+1:]
	if last == "bias" || last == "temp" || last == "query_tokens" || last == "query" || last == "class_embedding" || last == "pos_embed" {
		return true
	}
	for _, part := range strings.Split(name, ".") {
		switch {
		case strings.Contains(part, "norm"), strings.HasPrefix(part, "ln_"), part == "ln_vision", part == "LayerNorm",
			strings.Contains(part, "embed_tokens"), strings.Contains(part, "embeddings"), strings.Contains(part, "position_embedding"):
			return true
		}
	}
	return false
}

// decayMask returns the per-parameter weight-decay mask for AdamW.
func decayMask(params []*kernels.Tensor) func(*kernels.Tensor) bool {
	no := map[*kernels.Tensor]bool{}
	for _, p := range params {
		if NoDecay(p.Name, p.Shape) {
			no[p] = true
		}
	}
	return func(p *kernels.Tensor) bool { return !no[p] }
}
