package nn

import (
	"math"

	"github.com/loomtrain/loom/kernels"
)

// SinCos2D returns fixed 2-D sine-cosine position embeddings [gh·gw, dim]
// for a gh×gw grid (row-major), as MAE's get_2d_sincos_pos_embed, which
// Qwen-VL's Resampler uses (vllm layers/resampler.py): the first dim/2
// columns encode the column index w and the last dim/2 the row index h
// (MAE's meshgrid(w, h) order), each as [sin(p·ω_k), cos(p·ω_k)] with
// ω_k = 1/10000^(k/(dim/4)), k < dim/4.
func SinCos2D(gh, gw, dim int) *kernels.Tensor {
	out := kernels.Zeros(gh*gw, dim)
	quarter := dim / 4
	for h := 0; h < gh; h++ {
		for w := 0; w < gw; w++ {
			row := out.Data[(h*gw+w)*dim : (h*gw+w+1)*dim]
			for half, p := range []float64{float64(w), float64(h)} {
				base := half * dim / 2
				for k := 0; k < quarter; k++ {
					omega := 1 / math.Pow(10000, float64(k)/float64(quarter))
					row[base+k] = float32(math.Sin(p * omega))
					row[base+quarter+k] = float32(math.Cos(p * omega))
				}
			}
		}
	}
	return out
}

// cubic is the Keys cubic convolution kernel with a = -0.75, as PyTorch's
// upsample_bicubic2d (aten/src/ATen/native/UpSample.h cubic_convolution1/2).
func cubic(x float64) float64 {
	const a = -0.75
	x = math.Abs(x)
	switch {
	case x <= 1:
		return ((a+2)*x-(a+3))*x*x + 1
	case x < 2:
		return ((a*x-5*a)*x+8*a)*x - 4*a
	}
	return 0
}

// bicubic1D returns the [out, in] matrix of 1-D bicubic resampling with
// align_corners=False and border clamping, as F.interpolate(mode="bicubic").
func bicubic1D(in, out int) []float64 {
	m := make([]float64, out*in)
	scale := float64(in) / float64(out)
	for o := 0; o < out; o++ {
		src := (float64(o)+0.5)*scale - 0.5
		f := math.Floor(src)
		t := src - f
		for k := -1; k <= 2; k++ {
			idx := min(max(int(f)+k, 0), in-1)
			m[o*in+idx] += cubic(float64(k) - t)
		}
	}
	return m
}

// BicubicMatrix returns the constant [oh·ow, ih·iw] matrix M such that M·x
// resamples a row-major ih×iw grid of vectors x [ih·iw, C] to oh×ow with
// PyTorch's bicubic interpolation (align_corners=False). Because
// interpolation is linear, applying it with Matmul keeps the gradient to the
// learned positions: Qwen-VL's get_abs_pos interpolates the 16×16 ViT
// positions to 32×32 at 448 px on every forward pass.
func BicubicMatrix(ih, iw, oh, ow int) *kernels.Tensor {
	mh, mw := bicubic1D(ih, oh), bicubic1D(iw, ow)
	out := kernels.Zeros(oh*ow, ih*iw)
	for y := 0; y < oh; y++ {
		for x := 0; x < ow; x++ {
			r := out.Data[(y*ow+x)*ih*iw:]
			for i := 0; i < ih; i++ {
				if mh[y*ih+i] == 0 {
					continue
				}
				for j := 0; j < iw; j++ {
					r[i*iw+j] = float32(mh[y*ih+i] * mw[x*iw+j])
				}
			}
		}
	}
	return out
}
