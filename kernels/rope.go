package kernels

import (
	"fmt"
	"math"
)

// ---------------------------------------------------------------------------
// Rotary position embedding (RoPE), "rotate half" convention of LLaMA/HF:
// within a rotated block of width w, channel c < w/2 pairs with c + w/2 and
// both rotate by pos·θ^(−2c/w).
// x is [rows, h, d]; pos gives one position per row.
// ---------------------------------------------------------------------------

// ropeApply rotates channels [off, off+w) of every head by pos[row]·freq
// (sign −1 applies the inverse rotation, for backward) and accumulates into
// y (y = x rotated when y starts at 0).
func ropeApply[T float](rows, h, d int, x, y []T, pos []int32, theta float64, off, w int, sign float64) {
	half := w / 2
	inv := make([]float64, half)
	for c := range inv {
		inv[c] = math.Pow(theta, -2*float64(c)/float64(w))
	}
	// The angles depend on the position only: one table row per distinct
	// position (ropeRows), not one per row.
	np, row := ropeRows(rows, pos)
	cst, snt := make([]T, np*half), make([]T, np*half)
	for i := 0; i < np; i++ {
		p := float64(ropePos(i, pos, np, rows))
		for c := range inv {
			a := p * inv[c]
			cst[i*half+c], snt[i*half+c] = T(math.Cos(a)), T(sign*math.Sin(a))
		}
	}
	for r := 0; r < rows; r++ {
		t := row(r) * half
		cs, sn := cst[t:t+half], snt[t:t+half]
		for hh := 0; hh < h; hh++ {
			base := r*h*d + hh*d + off
			xr, yr := x[base:base+w], y[base:base+w]
			for c := 0; c < half; c++ {
				x1, x2 := xr[c], xr[c+half]
				yr[c] += x1*cs[c] - x2*sn[c]
				yr[c+half] += x1*sn[c] + x2*cs[c]
			}
		}
	}
}

// ropeRows sizes the angle table of rows rotated at pos[r%len(pos)] and
// maps each row to its table row. Positions that are small non-negative
// integers (a batch of sequences, each from 0) get a row per value from
// 0 to the largest; otherwise a row per entry of pos that is used.
func ropeRows(rows int, pos []int32) (int, func(r int) int) {
	used := min(rows, len(pos))
	hi := int32(-1)
	for _, p := range pos[:used] {
		if p < 0 {
			hi = -1
			break
		}
		hi = max(hi, p)
	}
	if hi >= 0 && int(hi)+1 < used {
		return int(hi) + 1, func(r int) int { return int(pos[r%len(pos)]) }
	}
	return used, func(r int) int { return r % len(pos) }
}

// ropePos is the position of table row i of ropeRows(rows, pos), n rows.
func ropePos(i int, pos []int32, n, rows int) int32 {
	if n < min(rows, len(pos)) {
		return int32(i) // a row per value
	}
	return pos[i]
}

// copyOutside copies (accumulates) the channels of each head outside [off, off+w).
func copyOutside[T float](rows, h, d int, x, y []T, blocks [][2]int) {
	for i := 0; i < rows*h; i++ {
		xr, yr := x[i*d:(i+1)*d], y[i*d:(i+1)*d]
		for c := 0; c < d; c++ {
			inside := false
			for _, b := range blocks {
				if c >= b[0] && c < b[0]+b[1] {
					inside = true
				}
			}
			if !inside {
				yr[c] += xr[c]
			}
		}
	}
}

// RoPEConfig configures Tape.RoPE.
type RoPEConfig struct {
	Theta float64 // base; 10000 (LLaMA), 1e6…5e7 for LWM's long-context stages
	// Pos holds one position per token row (x's dimensions before [H, D]),
	// or one per sequence position shared by every batch row (len = S).
	// Packed sequences restart at 0 in each segment.
	Pos []int32
	// Rows and Cols, instead of Pos, give 2-D positions (image grids): the
	// first half of each head's channels rotates by the row, the second
	// half by the column.
	Rows, Cols []int32
	// Dims rotates only the first Dims channels of each head (partial
	// rotary); 0 means all.
	Dims int
	// InvFreq, when set, gives the inverse frequency of each rotated pair
	// (len = rotated channels/2, per block for 2-D) in place of
	// θ^(−2c/w): the rope_scaling variants (linear, NTK, llama3, yarn)
	// only change these. The rotation then follows Hugging Face's
	// LlamaRotaryEmbedding in float32: angle = float32(pos)·InvFreq[c]
	// rounded to float32, cos and sin rounded to float32 and multiplied by
	// AttnScale; Theta is unused.
	InvFreq []float32
	// AttnScale multiplies cos and sin (yarn's attention_factor) when
	// InvFreq is set; 0 means 1.
	AttnScale float32
}

// ropeApplyInv is ropeApply with explicit float32 inverse frequencies and
// the float32 angle/cos/sin rounding of transformers' rotary embedding
// (see RoPEConfig.InvFreq).
func ropeApplyInv(rows, h, d int, x, y []float32, pos []int32, inv []float32, scale float32, off, w int, sign float32) {
	half := w / 2
	np, row := ropeRows(rows, pos) // one table row per distinct position, as in ropeApply
	cst, snt := make([]float32, np*half), make([]float32, np*half)
	for i := 0; i < np; i++ {
		p := float32(ropePos(i, pos, np, rows))
		for c := 0; c < half; c++ {
			a := float64(p * inv[c]) // the float32 product, as torch's matmul of [half,1]·[1,T]
			cst[i*half+c], snt[i*half+c] = float32(math.Cos(a))*scale, sign*(float32(math.Sin(a))*scale)
		}
	}
	for r := 0; r < rows; r++ {
		t := row(r) * half
		cs, sn := cst[t:t+half], snt[t:t+half]
		for hh := 0; hh < h; hh++ {
			base := r*h*d + hh*d + off
			xr, yr := x[base:base+w], y[base:base+w]
			for c := 0; c < half; c++ {
				x1, x2 := xr[c], xr[c+half]
				yr[c] += x1*cs[c] - x2*sn[c]
				yr[c+half] += x2*cs[c] + x1*sn[c]
			}
		}
	}
}

// RoPE applies rotary position embedding to x [..., H, D] (D even).
func (tp *Tape) RoPE(x *Tensor, cfg RoPEConfig) *Tensor {
	if len(x.Shape) < 2 {
		panic(shapeErr("RoPE", x.Shape, nil, "want [..., heads, dim]"))
	}
	h, d := x.Shape[len(x.Shape)-2], x.Shape[len(x.Shape)-1]
	rows := numel(x.Shape[:len(x.Shape)-2])
	rd := cfg.Dims
	if rd == 0 {
		rd = d
	}
	if cfg.Theta <= 0 && cfg.InvFreq == nil {
		panic(fmt.Errorf("kernels: RoPE: theta %g must be positive", cfg.Theta))
	}
	var blocks [][2]int
	var poss [][]int32
	if cfg.Rows != nil || cfg.Cols != nil {
		if rd%4 != 0 || rd > d {
			panic(shapeErr("RoPE", x.Shape, []int{rd}, "2-D RoPE needs rotated dims divisible by 4"))
		}
		blocks = [][2]int{{0, rd / 2}, {rd / 2, rd / 2}}
		poss = [][]int32{cfg.Rows, cfg.Cols}
	} else {
		if rd%2 != 0 || rd > d {
			panic(shapeErr("RoPE", x.Shape, []int{rd}, "rotated dims must be even and at most the head dim"))
		}
		blocks = [][2]int{{0, rd}}
		poss = [][]int32{cfg.Pos}
	}
	for _, p := range poss {
		if len(p) == 0 || rows%len(p) != 0 {
			panic(shapeErr("RoPE", x.Shape, []int{len(p)}, "need one position per token row (%d) or per sequence position", rows))
		}
	}
	scale := cfg.AttnScale
	if scale == 0 {
		scale = 1
	}
	if cfg.InvFreq != nil {
		for _, b := range blocks {
			if len(cfg.InvFreq) != b[1]/2 {
				panic(shapeErr("RoPE", x.Shape, []int{len(cfg.InvFreq)}, "InvFreq needs one frequency per rotated pair (%d)", b[1]/2))
			}
		}
	}
	if x.d != nil {
		return tp.ropeDev(x, rows, h, d, blocks, poss, cfg, scale)
	}
	apply := func(src, dst []float32, sign float64) {
		for i, b := range blocks {
			if cfg.InvFreq != nil {
				ropeApplyInv(rows, h, d, src, dst, poss[i], cfg.InvFreq, scale, b[0], b[1], float32(sign))
			} else {
				ropeApply(rows, h, d, src, dst, poss[i], cfg.Theta, b[0], b[1], sign)
			}
		}
		copyOutside(rows, h, d, src, dst, blocks)
	}
	out := Zeros(x.Shape...)
	apply(x.Data, out.Data, 1)
	tp.record("RoPE", out, func() { apply(out.Grad, x.gradBuf(), -1) }, x)
	return out
}

// ---------------------------------------------------------------------------
// Fixed 2-D sin-cos position table (MAE / ViT-style, no gradient).
// ---------------------------------------------------------------------------

// SinCos2D returns the [gridH·gridW, dim] table of MAE's
// get_2d_sincos_pos_embed: for the token at (row i, column j), the first
// dim/2 channels encode j and the last dim/2 encode i, each as
// [sin(p·ω), cos(p·ω)] with ω_k = 10000^(−k/(dim/4)). dim must be a
// multiple of 4.
func SinCos2D(gridH, gridW, dim int) *Tensor {
	if dim%4 != 0 || gridH < 0 || gridW < 0 {
		panic(shapeErr("SinCos2D", []int{gridH, gridW}, []int{dim}, "dim must be a multiple of 4"))
	}
	t := Zeros(gridH*gridW, dim)
	q := dim / 4
	for i := 0; i < gridH; i++ {
		for j := 0; j < gridW; j++ {
			row := t.Data[(i*gridW+j)*dim:][:dim]
			for k := 0; k < q; k++ {
				om := 1 / math.Pow(10000, float64(k)/float64(q))
				row[k] = float32(math.Sin(float64(j) * om))
				row[q+k] = float32(math.Cos(float64(j) * om))
				row[2*q+k] = float32(math.Sin(float64(i) * om))
				row[3*q+k] = float32(math.Cos(float64(i) * om))
			}
		}
	}
	return t
}
