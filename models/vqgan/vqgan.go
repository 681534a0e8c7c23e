package vqgan

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
)

// Config sizes the VQGAN.
type Config struct {
	ImageSize int   // input side in pixels (256)
	Channels  int   // image channels (3)
	Base      int   // width of the first level (128)
	Mult      []int // width multiplier per level; len(Mult)-1 downsamplings
	NumRes    int   // residual blocks per level (2)
	Groups    int   // GroupNorm groups (32); must divide every width
	CodeDim   int   // code vector size (64; LWM's quantized_embed_dim)
	Codebook  int   // number of codes (8192)
	Beta      float32
	// ZChannels is the width of the encoder's output and the decoder's
	// input, on the far side of the 1×1 quant_conv / post_quant_conv
	// (LWM's z_channels, 64); 0 means CodeDim.
	ZChannels int
}

// Z is the encoder output width: ZChannels, or CodeDim when unset.
func (c Config) Z() int {
	if c.ZChannels > 0 {
		return c.ZChannels
	}
	return c.CodeDim
}

// Downsample is the factor from pixels to code grid.
func (c Config) Downsample() int { return 1 << (len(c.Mult) - 1) }

// Grid is the side of the code grid for an ImageSize image.
func (c Config) Grid() int { return c.ImageSize / c.Downsample() }

// Validate names the first inconsistent field.
func (c Config) Validate() error {
	if len(c.Mult) == 0 || c.Base <= 0 || c.NumRes <= 0 || c.CodeDim <= 0 || c.Codebook <= 0 || c.Groups <= 0 || c.Channels <= 0 {
		return fmt.Errorf("vqgan: channels, mult, base, num_res, code_dim, codebook and groups must be set")
	}
	if c.ZChannels < 0 {
		return fmt.Errorf("vqgan: z_channels %d is negative", c.ZChannels)
	}
	if c.ImageSize%c.Downsample() != 0 {
		return fmt.Errorf("vqgan: image_size %d is not a multiple of the downsampling %d", c.ImageSize, c.Downsample())
	}
	for i, m := range c.Mult {
		if (c.Base*m)%c.Groups != 0 {
			return fmt.Errorf("vqgan: mult[%d]: width %d is not a multiple of groups %d", i, c.Base*m, c.Groups)
		}
	}
	return nil
}

func convParams(in, out, k int) int { return out*in*k*k + out }
func normParams(c int) int          { return 2 * c }
func resParams(in, out int) int {
	n := normParams(in) + convParams(in, out, 3) + normParams(out) + convParams(out, out, 3)
	if in != out {
		n += convParams(in, out, 1)
	}
	return n
}

// ParamCount counts the parameters New creates, without allocating.
func ParamCount(c Config) int {
	z := c.Z()
	n := convParams(c.Channels, c.Base, 3)
	ch := c.Base
	for i, m := range c.Mult {
		for r := 0; r < c.NumRes; r++ {
			n += resParams(ch, c.Base*m)
			ch = c.Base * m
		}
		if i < len(c.Mult)-1 {
			n += convParams(ch, ch, 3)
		}
	}
	n += 2*resParams(ch, ch) + normParams(ch) + convParams(ch, z, 3)
	n += convParams(z, c.CodeDim, 1) + c.Codebook*c.CodeDim + convParams(c.CodeDim, z, 1)
	// decoder: NumRes+1 blocks per level
	n += convParams(z, ch, 3) + 2*resParams(ch, ch)
	for i := len(c.Mult) - 1; i >= 0; i-- {
		for r := 0; r <= c.NumRes; r++ {
			n += resParams(ch, c.Base*c.Mult[i])
			ch = c.Base * c.Mult[i]
		}
		if i > 0 {
			n += convParams(ch, ch, 3)
		}
	}
	return n + normParams(ch) + convParams(ch, c.Channels, 3)
}

type conv struct {
	w, b   *kernels.Tensor
	stride int
	pad    int
}

func newConv(p *nn.Params, rng *rand.Rand, name string, in, out, k, stride int) conv {
	std := float32(1) / float32(in*k*k) // keeps activations O(1) through depth
	c := conv{
		w: p.Add(name+".weight", out, in, k, k).InitNormal(rng, float32(math.Sqrt(float64(std)))),
		b: p.Add(name+".bias", out), stride: stride, pad: k / 2,
	}
	if stride > 1 {
		c.pad = 0 // downsample: padded bottom/right by forward
	}
	return c
}

func (c conv) forward(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	if c.stride > 1 {
		x = padBottomRight(tp, x)
	}
	return tp.Conv2D(x, c.w, c.b, c.stride, c.pad)
}

// padBottomRight appends one zero row and one zero column to x [B, C, H, W]:
// LWM's Downsample (jnp.pad [(0,0),(0,1),(0,1),(0,0)] before a VALID 3×3
// stride-2 conv), so output pixel i sees input pixels 2i..2i+2.
func padBottomRight(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	b, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	x = tp.Concat(2, x, kernels.Zeros(b, c, 1, w))
	return tp.Concat(3, x, kernels.Zeros(b, c, h+1, 1))
}

// groupNorm is nn.GroupNorm composed from kernels ops: LayerNorm without
// affine over each group's [C/G·H·W] values, then the per-channel affine.
// Groups are contiguous channel ranges and eps is 1e-6, as flax.linen
// GroupNorm's defaults (LWM uses nn.GroupNorm() with 32 groups).
type groupNorm struct {
	w, b   *kernels.Tensor
	groups int
}

func newGroupNorm(p *nn.Params, name string, c, groups int) groupNorm {
	return groupNorm{w: p.Add(name+".weight", c).Fill(1), b: p.Add(name+".bias", c), groups: groups}
}

func (g groupNorm) forward(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	b, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	n := c / g.groups * h * w
	y := tp.Reshape(x, b, g.groups, n)
	y = tp.LayerNorm(y, kernels.Full(1, n), kernels.Zeros(n), 1e-6)
	y = tp.Reshape(y, b, c, h, w)
	return tp.Add(tp.Mul(y, tp.Reshape(g.w, c, 1, 1)), tp.Reshape(g.b, c, 1, 1))
}

type resBlock struct {
	n1, n2   groupNorm
	c1, c2   conv
	shortcut *conv
}

func newRes(p *nn.Params, rng *rand.Rand, name string, in, out, groups int) resBlock {
	r := resBlock{
		n1: newGroupNorm(p, name+".norm1", in, groups),
		c1: newConv(p, rng, name+".conv1", in, out, 3, 1),
		n2: newGroupNorm(p, name+".norm2", out, groups),
		c2: newConv(p, rng, name+".conv2", out, out, 3, 1),
	}
	if in != out {
		s := newConv(p, rng, name+".nin_shortcut", in, out, 1, 1)
		r.shortcut = &s
	}
	return r
}

func (r resBlock) forward(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	h := r.c1.forward(tp, tp.SiLU(r.n1.forward(tp, x)))
	h = r.c2.forward(tp, tp.SiLU(r.n2.forward(tp, h)))
	if r.shortcut != nil {
		x = r.shortcut.forward(tp, x)
	}
	return tp.Add(x, h)
}

// VQGAN is a built tokenizer.
type VQGAN struct {
	Cfg      Config
	Codebook *kernels.Tensor // [Codebook, CodeDim]

	encIn   conv
	enc     []resBlock
	down    map[int]conv // after level i
	encMid  [2]resBlock
	encNorm groupNorm
	encOut  conv
	quant   conv // 1×1, Z → CodeDim
	post    conv // 1×1, CodeDim → Z

	decIn   conv
	decMid  [2]resBlock
	dec     []resBlock
	up      map[int]conv // after level i's blocks (decoder order)
	decNorm groupNorm
	decOut  conv
}

// New adds the tokenizer's parameters under prefix (e.g. "vqgan"). The
// names follow taming-transformers' PyTorch VQModel (encoder.down.i.block.j,
// quant_conv, quantize.embedding, post_quant_conv, decoder.up.i.block.j);
// hf.LWMVQGANMapping maps LWM's Flax names onto them.
func New(p *nn.Params, rng *rand.Rand, prefix string, c Config) (*VQGAN, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Beta == 0 {
		c.Beta = 0.25
	}
	z := c.Z()
	v := &VQGAN{Cfg: c, down: map[int]conv{}, up: map[int]conv{}}
	e := prefix + ".encoder"
	v.encIn = newConv(p, rng, e+".conv_in", c.Channels, c.Base, 3, 1)
	ch := c.Base
	for i, m := range c.Mult {
		for r := 0; r < c.NumRes; r++ {
			v.enc = append(v.enc, newRes(p, rng, fmt.Sprintf("%s.down.%d.block.%d", e, i, r), ch, c.Base*m, c.Groups))
			ch = c.Base * m
		}
		if i < len(c.Mult)-1 {
			v.down[i] = newConv(p, rng, fmt.Sprintf("%s.down.%d.downsample.conv", e, i), ch, ch, 3, 2)
		}
	}
	v.encMid = [2]resBlock{newRes(p, rng, e+".mid.block_1", ch, ch, c.Groups), newRes(p, rng, e+".mid.block_2", ch, ch, c.Groups)}
	v.encNorm = newGroupNorm(p, e+".norm_out", ch, c.Groups)
	v.encOut = newConv(p, rng, e+".conv_out", ch, z, 3, 1)
	v.quant = newConv(p, rng, prefix+".quant_conv", z, c.CodeDim, 1, 1)
	v.Codebook = p.Add(prefix+".quantize.embedding.weight", c.Codebook, c.CodeDim).InitUniform(rng, 1/float32(c.Codebook))
	v.post = newConv(p, rng, prefix+".post_quant_conv", c.CodeDim, z, 1, 1)

	d := prefix + ".decoder"
	v.decIn = newConv(p, rng, d+".conv_in", z, ch, 3, 1)
	v.decMid = [2]resBlock{newRes(p, rng, d+".mid.block_1", ch, ch, c.Groups), newRes(p, rng, d+".mid.block_2", ch, ch, c.Groups)}
	for i := len(c.Mult) - 1; i >= 0; i-- {
		for r := 0; r <= c.NumRes; r++ {
			v.dec = append(v.dec, newRes(p, rng, fmt.Sprintf("%s.up.%d.block.%d", d, i, r), ch, c.Base*c.Mult[i], c.Groups))
			ch = c.Base * c.Mult[i]
		}
		if i > 0 {
			v.up[i] = newConv(p, rng, fmt.Sprintf("%s.up.%d.upsample.conv", d, i), ch, ch, 3, 1)
		}
	}
	v.decNorm = newGroupNorm(p, d+".norm_out", ch, c.Groups)
	v.decOut = newConv(p, rng, d+".conv_out", ch, c.Channels, 3, 1)
	return v, nil
}

// Encode maps images [B, C, H, W] (values in [-1, 1]) to pre-quantisation
// latents [B, CodeDim, H/f, W/f]: the encoder, then quant_conv (LWM's
// VQGANModel.encode up to the quantiser).
func (v *VQGAN) Encode(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	x = v.encIn.forward(tp, x)
	k := 0
	for i := range v.Cfg.Mult {
		for r := 0; r < v.Cfg.NumRes; r++ {
			x = v.enc[k].forward(tp, x)
			k++
		}
		if d, ok := v.down[i]; ok {
			x = d.forward(tp, x)
		}
	}
	x = v.encMid[1].forward(tp, v.encMid[0].forward(tp, x))
	x = v.encOut.forward(tp, tp.SiLU(v.encNorm.forward(tp, x)))
	return v.quant.forward(tp, x)
}

// Quantize maps latents [B, D, h, w] to their nearest codes in squared
// Euclidean distance (no normalisation; ties go to the lowest index, as
// jnp.argmin): the quantised latents (straight-through), the code indices
// [B·h·w] in row-major grid order, and the codebook + β·commitment loss.
func (v *VQGAN) Quantize(tp *kernels.Tape, z *kernels.Tensor) (*kernels.Tensor, []int32, *kernels.Tensor) {
	b, d, h, w := z.Shape[0], z.Shape[1], z.Shape[2], z.Shape[3]
	zr := tp.Permute(z, 0, 2, 3, 1) // [B, h, w, D]
	r := tp.VectorQuantize(zr, v.Codebook, v.Cfg.Beta)
	return tp.Permute(tp.Reshape(r.Out, b, h, w, d), 0, 3, 1, 2), r.Indices, r.Loss
}

func upsample2(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	idx := func(n int) []int32 {
		out := make([]int32, 2*n)
		for i := range out {
			out[i] = int32(i / 2)
		}
		return out
	}
	x = tp.IndexSelect(x, 2, idx(x.Shape[2]))
	return tp.IndexSelect(x, 3, idx(x.Shape[3]))
}

// decode is post_quant_conv and the decoder, unclipped (the training path).
func (v *VQGAN) decode(tp *kernels.Tape, z *kernels.Tensor) *kernels.Tensor {
	x := v.decIn.forward(tp, v.post.forward(tp, z))
	x = v.decMid[1].forward(tp, v.decMid[0].forward(tp, x))
	k := 0
	for i := len(v.Cfg.Mult) - 1; i >= 0; i-- {
		for r := 0; r <= v.Cfg.NumRes; r++ {
			x = v.dec[k].forward(tp, x)
			k++
		}
		if u, ok := v.up[i]; ok {
			x = u.forward(tp, upsample2(tp, x))
		}
	}
	return v.decOut.forward(tp, tp.SiLU(v.decNorm.forward(tp, x)))
}

// Decode maps quantised latents [B, D, h, w] back to images [B, C, H, W],
// clipped to [-1, 1] as LWM's VQGANModel.decode (the gradient is zero where
// the clip is active). Forward's reconstruction loss uses the unclipped
// output.
func (v *VQGAN) Decode(tp *kernels.Tape, z *kernels.Tensor) *kernels.Tensor {
	return clip1(tp, v.decode(tp, z))
}

// clip1 clamps x to [-1, 1].
func clip1(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	out := kernels.Zeros(x.Shape...)
	for i, v := range x.Data {
		out.Data[i] = min(max(v, -1), 1)
	}
	return tp.Custom("Clip", out, func() {
		g := x.GradBuf()
		for i, v := range x.Data {
			if v > -1 && v < 1 {
				g[i] += out.Grad[i]
			}
		}
	}, x)
}

// DecodeCodes turns code indices [B·h·w] back into images (LWM's
// VQGANModel.decode with is_codebook_indices).
func (v *VQGAN) DecodeCodes(tp *kernels.Tape, codes []int32, b, h, w int) *kernels.Tensor {
	e := tp.Reshape(tp.Embedding(v.Codebook, codes), b, h, w, v.Cfg.CodeDim)
	return v.Decode(tp, tp.Permute(e, 0, 3, 1, 2))
}

// Losses are the named loss terms of one tokenizer training step.
type Losses struct {
	Total, Recon, VQ *kernels.Tensor
	Codes            []int32
}

// Forward encodes, quantises and decodes images [B, C, H, W] and returns
// the training loss: mean squared reconstruction error (of the unclipped
// reconstruction) + codebook loss + β·commitment.
func (v *VQGAN) Forward(tp *kernels.Tape, images *kernels.Tensor) Losses {
	zq, codes, vq := v.Quantize(tp, v.Encode(tp, images))
	rec := v.decode(tp, zq)
	mse := tp.Mean(tp.Square(tp.Sub(rec, images)))
	return Losses{Total: tp.Add(mse, vq), Recon: mse, VQ: vq, Codes: codes}
}

// Tokenize returns the code indices of images [B, C, H, W] without
// recording gradients: the vision ids LWM trains on, [B][h·w].
func (v *VQGAN) Tokenize(images *kernels.Tensor) [][]int32 {
	_, codes, _ := v.Quantize(nil, v.Encode(nil, images))
	b := images.Shape[0]
	per := len(codes) / b
	out := make([][]int32, b)
	for i := range out {
		out[i] = codes[i*per : (i+1)*per]
	}
	return out
}
