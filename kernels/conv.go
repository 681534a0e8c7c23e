package kernels

import "math"

// ---------------------------------------------------------------------------
// Convolution through im2col + GEMM, and patch embedding (stride = kernel).
// Layouts are PyTorch's: images [B, C, H, W], weights [O, C, kh, kw].
// ---------------------------------------------------------------------------

type convGeom struct {
	b, c, h, w  int
	kh, kw      int
	stride, pad int
	ho, wo      int
}

func (g convGeom) colWidth() int { return g.c * g.kh * g.kw }

// im2colRun copies (or, when acc, scatters back) between x [B, C, H, W] and
// cols [B, Ho·Wo, C·kh·kw]; padding reads as zero.
func im2colRun[T float](g convGeom, x, cols []T, acc bool) {
	cw := g.colWidth()
	for b := 0; b < g.b; b++ {
		for oy := 0; oy < g.ho; oy++ {
			for ox := 0; ox < g.wo; ox++ {
				row := cols[((b*g.ho+oy)*g.wo+ox)*cw:][:cw]
				i := 0
				for c := 0; c < g.c; c++ {
					for ky := 0; ky < g.kh; ky++ {
						iy := oy*g.stride - g.pad + ky
						for kx := 0; kx < g.kw; kx++ {
							ix := ox*g.stride - g.pad + kx
							if iy >= 0 && iy < g.h && ix >= 0 && ix < g.w {
								xi := ((b*g.c+c)*g.h+iy)*g.w + ix
								if acc {
									x[xi] += row[i]
								} else {
									row[i] = x[xi]
								}
							} else if !acc {
								row[i] = 0
							}
							i++
						}
					}
				}
			}
		}
	}
}

func (tp *Tape) im2col(x *Tensor, g convGeom) *Tensor {
	if x.d != nil {
		return tp.gatherDev("Im2Col", x, []int{g.b, g.ho * g.wo, g.colWidth()}, im2colIdx(g))
	}
	out := Zeros(g.b, g.ho*g.wo, g.colWidth())
	im2colRun(g, x.Data, out.Data, false)
	tp.record("Im2Col", out, func() { im2colRun(g, x.gradBuf(), out.Grad, true) }, x)
	return out
}

func convPlan(op string, x, w *Tensor, stride, pad int) convGeom {
	if len(x.Shape) != 4 || len(w.Shape) != 4 || x.Shape[1] != w.Shape[1] {
		panic(shapeErr(op, x.Shape, w.Shape, "want x [B, C, H, W] and w [O, C, kh, kw]"))
	}
	if stride < 1 || pad < 0 {
		panic(shapeErr(op, x.Shape, w.Shape, "stride %d must be >= 1 and padding %d >= 0", stride, pad))
	}
	g := convGeom{b: x.Shape[0], c: x.Shape[1], h: x.Shape[2], w: x.Shape[3], kh: w.Shape[2], kw: w.Shape[3], stride: stride, pad: pad}
	g.ho = (g.h+2*pad-g.kh)/stride + 1
	g.wo = (g.w+2*pad-g.kw)/stride + 1
	if g.h+2*pad < g.kh || g.w+2*pad < g.kw {
		panic(shapeErr(op, x.Shape, w.Shape, "kernel larger than the padded image"))
	}
	return g
}

// Conv2D is a 2-D cross-correlation (nn.Conv2d) of x [B, C, H, W] with w
// [O, C, kh, kw], optional bias [O], the given stride and zero padding:
// the result is [B, O, Ho, Wo] with Ho = (H+2·pad−kh)/stride + 1.
func (tp *Tape) Conv2D(x, w, bias *Tensor, stride, pad int) *Tensor {
	g := convPlan("Conv2D", x, w, stride, pad)
	o := w.Shape[0]
	cols := tp.im2col(x, g)
	y := tp.Linear(cols, tp.Reshape(w, o, g.colWidth()), bias) // [B, Ho·Wo, O]
	return tp.Reshape(tp.Transpose(y, 1, 2), g.b, o, g.ho, g.wo)
}

// PatchEmbed cuts img [B, C, H, W] into non-overlapping p×p patches and
// projects each with w [E, C, p, p] (nn.Conv2d(C, E, p, stride=p) weights)
// and bias [E]: the result is [B, (H/p)·(W/p), E], patches in row-major
// grid order. H and W must be multiples of p.
func (tp *Tape) PatchEmbed(img, w, bias *Tensor) *Tensor {
	if len(w.Shape) != 4 || w.Shape[2] != w.Shape[3] {
		panic(shapeErr("PatchEmbed", img.Shape, w.Shape, "want square patches w [E, C, p, p]"))
	}
	p := w.Shape[2]
	g := convPlan("PatchEmbed", img, w, p, 0)
	if g.h%p != 0 || g.w%p != 0 {
		panic(shapeErr("PatchEmbed", img.Shape, w.Shape, "image size is not a multiple of the patch size %d", p))
	}
	cols := tp.im2col(img, g)
	return tp.Linear(cols, tp.Reshape(w, w.Shape[0], g.colWidth()), bias)
}

// conv2dNaive is the direct-loop reference of Conv2D in float64.
func conv2dNaive(g convGeom, o int, x, w, bias []float64) []float64 {
	y := make([]float64, g.b*o*g.ho*g.wo)
	for b := 0; b < g.b; b++ {
		for oc := 0; oc < o; oc++ {
			for oy := 0; oy < g.ho; oy++ {
				for ox := 0; ox < g.wo; ox++ {
					s := 0.0
					if bias != nil {
						s = bias[oc]
					}
					for c := 0; c < g.c; c++ {
						for ky := 0; ky < g.kh; ky++ {
							for kx := 0; kx < g.kw; kx++ {
								iy, ix := oy*g.stride-g.pad+ky, ox*g.stride-g.pad+kx
								if iy < 0 || iy >= g.h || ix < 0 || ix >= g.w {
									continue
								}
								s += x[((b*g.c+c)*g.h+iy)*g.w+ix] * w[((oc*g.c+c)*g.kh+ky)*g.kw+kx]
							}
						}
					}
					y[((b*o+oc)*g.ho+oy)*g.wo+ox] = s
				}
			}
		}
	}
	return y
}

// ---------------------------------------------------------------------------
// Bicubic interpolation (torch.nn.functional.interpolate(mode="bicubic",
// align_corners=False), A = −0.75), written as out = Wh·X·Wwᵀ per channel
// with interpolation matrices Wh [Ho, H] and Ww [Wo, W]; used to resize
// learned position-embedding grids (Qwen-VL 16×16 → 32×32).
// ---------------------------------------------------------------------------

// bicubicMatrix returns the [out, in] interpolation weights of one axis.
func bicubicMatrix(in, out int) []float64 {
	const a = -0.75
	m := make([]float64, out*in)
	scale := float64(in) / float64(out)
	cc1 := func(x float64) float64 { return ((a+2)*x-(a+3))*x*x + 1 }
	cc2 := func(x float64) float64 { return ((a*x-5*a)*x+8*a)*x - 4*a }
	for o := 0; o < out; o++ {
		src := (float64(o)+0.5)*scale - 0.5
		x0 := math.Floor(src)
		t := src - x0
		ws := [4]float64{cc2(t + 1), cc1(t), cc1(1 - t), cc2(2 - t)}
		for k := 0; k < 4; k++ {
			idx := min(max(int(x0)-1+k, 0), in-1)
			m[o*in+idx] += ws[k]
		}
	}
	return m
}

func toT[T float](x []float64) []T {
	y := make([]T, len(x))
	for i, v := range x {
		y[i] = T(v)
	}
	return y
}

// bicubicRun computes y = Wh·x·Wwᵀ for each of n channels (or, when bwd,
// dx += Whᵀ·dy·Ww), with tmp of size max(Ho·W, H·Wo)... per channel.
func bicubicRun[T float](g gemmFn[T], n, h, w, ho, wo int, wh, ww, x, y []T, bwd bool) {
	tmp := make([]T, ho*w)
	for c := 0; c < n; c++ {
		if !bwd {
			xc, yc := x[c*h*w:(c+1)*h*w], y[c*ho*wo:(c+1)*ho*wo]
			g(false, false, ho, w, h, 1, wh, h, xc, w, 0, tmp, w)  // [Ho, W]
			g(false, true, ho, wo, w, 1, tmp, w, ww, w, 0, yc, wo) // [Ho, Wo]
		} else {
			dy, dx := y[c*ho*wo:(c+1)*ho*wo], x[c*h*w:(c+1)*h*w]
			g(false, false, ho, w, wo, 1, dy, wo, ww, w, 0, tmp, w) // dy·Ww [Ho, W]
			g(true, false, h, w, ho, 1, wh, h, tmp, w, 1, dx, w)    // Whᵀ·… [H, W]
		}
	}
}

// InterpolateBicubic resizes the last two dimensions of x [..., H, W] to
// [..., outH, outW] like torch.nn.functional.interpolate(mode="bicubic",
// align_corners=False).
func (tp *Tape) InterpolateBicubic(x *Tensor, outH, outW int) *Tensor {
	if len(x.Shape) < 2 || outH < 1 || outW < 1 {
		panic(shapeErr("InterpolateBicubic", x.Shape, []int{outH, outW}, "want [..., H, W] and a positive output size"))
	}
	nd := len(x.Shape)
	h, w := x.Shape[nd-2], x.Shape[nd-1]
	if h < 1 || w < 1 {
		panic(shapeErr("InterpolateBicubic", x.Shape, []int{outH, outW}, "empty input grid"))
	}
	n := numel(x.Shape[:nd-2])
	wh, ww := toT[float32](bicubicMatrix(h, outH)), toT[float32](bicubicMatrix(w, outW))
	shape := append(append([]int{}, x.Shape[:nd-2]...), outH, outW)
	if x.d != nil {
		return tp.bicubicDev(x, n, h, w, outH, outW, wh, ww, shape)
	}
	out := Zeros(shape...)
	bicubicRun(sgemm, n, h, w, outH, outW, wh, ww, x.Data, out.Data, false)
	tp.record("InterpolateBicubic", out, func() {
		bicubicRun(sgemm, n, h, w, outH, outW, wh, ww, x.gradBuf(), out.Grad, true)
	}, x)
	return out
}
