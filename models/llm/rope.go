package llm

import (
	"fmt"
	"math"
)

// RoPE scaling types (config.json rope_scaling / rope_parameters
// "rope_type", with "type" as its legacy alias).
const (
	RoPEDefault = "default"
	RoPELinear  = "linear"  // position interpolation: inv_freq / factor
	RoPEDynamic = "dynamic" // dynamic NTK: a larger base beyond MaxPos
	RoPENTK     = "ntk"     // static NTK: base·factor^(d/(d−2))
	RoPELlama3  = "llama3"  // Llama 3.1 wavelength-banded interpolation
	RoPEYarn    = "yarn"    // YaRN ramp plus an attention factor on cos/sin
)

// RoPEScaling is rope_scaling: how the rotary inverse frequencies are
// changed for long contexts. The zero value is plain RoPE
// (inv_freq[i] = θ^(−2i/d)). The formulas, the float32 arithmetic and the
// defaults follow transformers' modeling_rope_utils.py.
type RoPEScaling struct {
	Type   string  // "" (= default), linear, dynamic, ntk, llama3, yarn
	Factor float64 // all but default
	// OrigMaxPos is original_max_position_embeddings: llama3's old
	// context length (required), yarn's pretraining length (0: MaxPos).
	OrigMaxPos int
	// llama3
	LowFreqFactor, HighFreqFactor float64
	// yarn: AttnFactor scales cos and sin (0: derived from Factor, Mscale
	// and MscaleAllDim as get_mscale does); BetaFast and BetaSlow bound the
	// ramp (0: 32 and 1); NoTruncate keeps the ramp bounds fractional
	// (truncate false).
	AttnFactor, BetaFast, BetaSlow float64
	Mscale, MscaleAllDim           float64
	NoTruncate                     bool
}

func (r RoPEScaling) dynamic() bool { return r.Type == RoPEDynamic }

func (r RoPEScaling) validate(c Config) error {
	switch r.Type {
	case "", RoPEDefault:
		return nil
	case RoPELinear, RoPENTK, RoPEDynamic, RoPELlama3, RoPEYarn:
	default:
		return fmt.Errorf("llm: rope scaling type %q: want linear, dynamic, ntk, llama3 or yarn", r.Type)
	}
	if !(r.Factor > 0) {
		return fmt.Errorf("llm: rope scaling %s: factor %g must be positive", r.Type, r.Factor)
	}
	switch r.Type {
	case RoPEDynamic, RoPEYarn:
		if c.MaxPos <= 0 && r.OrigMaxPos <= 0 {
			return fmt.Errorf("llm: rope scaling %s needs max positions (max_position_embeddings)", r.Type)
		}
	case RoPELlama3:
		if r.OrigMaxPos <= 0 || !(r.HighFreqFactor > r.LowFreqFactor) || !(r.LowFreqFactor > 0) {
			return fmt.Errorf("llm: rope scaling llama3 needs original_max_position_embeddings > 0 and high_freq_factor > low_freq_factor > 0 (got %d, %g, %g)",
				r.OrigMaxPos, r.HighFreqFactor, r.LowFreqFactor)
		}
	}
	return nil
}

// f32 helpers: torch's float32 tensor ops with Python scalars cast to
// float32. A Python scalar divided by a tensor is reciprocal(t)·scalar in
// torch (Tensor.__rdiv__), so rdiv rounds twice as torch does.
func pow32(b, e float32) float32 { return float32(math.Pow(float64(b), float64(e))) }
func rdiv(s, t float32) float32  { return (1 / t) * s }

// defaultInv is _compute_default_rope_parameters:
// 1.0 / (base ** (arange(0, dim, 2).float() / dim)) in float32.
func defaultInv(base float32, dim int) []float32 {
	inv := make([]float32, dim/2)
	for i := range inv {
		inv[i] = rdiv(1, pow32(base, float32(2*i)/float32(dim)))
	}
	return inv
}

// InvFreq returns the rotary inverse frequencies (dim/2 of them) and the
// attention factor on cos/sin for base theta and head dimension dim,
// computed in float32 as transformers does. maxPos is
// max_position_embeddings; seqLen (dynamic only) is the longest position
// + 1 of the batch: dynamic NTK changes the base only when seqLen exceeds
// maxPos. transformers' dynamic rotary embedding keeps the largest seqLen
// it has seen; Loom recomputes per batch, which is the same for each
// forward of a fresh model.
func (r RoPEScaling) InvFreq(theta float64, dim, maxPos, seqLen int) ([]float32, float32) {
	factor := float32(r.Factor)
	switch r.Type {
	case RoPELinear:
		inv := defaultInv(float32(theta), dim)
		for i := range inv {
			inv[i] /= factor
		}
		return inv, 1
	case RoPENTK:
		base := theta * math.Pow(r.Factor, float64(dim)/float64(dim-2))
		return defaultInv(float32(base), dim), 1
	case RoPEDynamic:
		if seqLen <= maxPos {
			return defaultInv(float32(theta), dim), 1
		}
		// base * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2)),
		// a float32 tensor expression because seq_len is a tensor.
		x := factor*float32(seqLen)/float32(maxPos) - float32(r.Factor-1)
		// torch raises a float32 tensor to a Python float exponent in double.
		base := float32(theta) * float32(math.Pow(float64(x), float64(dim)/float64(dim-2)))
		return defaultInv(base, dim), 1
	case RoPELlama3:
		inv := defaultInv(float32(theta), dim)
		old := float64(r.OrigMaxPos)
		lowWl, highWl := float32(old/r.LowFreqFactor), float32(old/r.HighFreqFactor)
		twoPi := float32(2 * math.Pi)
		for i, f := range inv {
			wl := rdiv(twoPi, f)
			l := f
			if wl > lowWl {
				l = f / factor
			}
			if !(wl < highWl) && !(wl > lowWl) {
				s := (rdiv(float32(old), wl) - float32(r.LowFreqFactor)) / float32(r.HighFreqFactor-r.LowFreqFactor)
				l = float32((1-s)*l/factor) + float32(s*l) // float32(): no fused multiply-add
			}
			inv[i] = l
		}
		return inv, 1
	case RoPEYarn:
		return r.yarn(float32(theta), theta, dim, maxPos)
	}
	return defaultInv(float32(theta), dim), 1
}

func (r RoPEScaling) yarn(base32 float32, base float64, dim, maxPos int) ([]float32, float32) {
	orig := r.OrigMaxPos
	if orig == 0 {
		orig = maxPos
	}
	mscale := func(scale, m float64) float64 {
		if scale <= 1 {
			return 1
		}
		return 0.1*m*math.Log(scale) + 1
	}
	af := r.AttnFactor
	if af == 0 {
		if r.Mscale != 0 && r.MscaleAllDim != 0 {
			af = mscale(r.Factor, r.Mscale) / mscale(r.Factor, r.MscaleAllDim)
		} else {
			af = mscale(r.Factor, 1)
		}
	}
	betaFast, betaSlow := r.BetaFast, r.BetaSlow
	if betaFast == 0 {
		betaFast = 32
	}
	if betaSlow == 0 {
		betaSlow = 1
	}
	corr := func(rot float64) float64 {
		return float64(dim) * math.Log(float64(orig)/(rot*2*math.Pi)) / (2 * math.Log(base))
	}
	low, high := corr(betaFast), corr(betaSlow)
	if !r.NoTruncate {
		low, high = math.Floor(low), math.Ceil(high)
	}
	low, high = max(low, 0), min(high, float64(dim-1))
	if low == high {
		high += 0.001
	}
	factor := float32(r.Factor)
	inv := make([]float32, dim/2)
	for i := range inv {
		pf := pow32(base32, float32(2*i)/float32(dim))
		extra, inter := rdiv(1, pf), rdiv(1, factor*pf)
		ramp := (float32(i) - float32(low)) / float32(high-low)
		ramp = min(max(ramp, 0), 1)
		ef := 1 - ramp
		inv[i] = float32(inter*(1-ef)) + float32(extra*ef)
	}
	return inv, float32(af)
}
