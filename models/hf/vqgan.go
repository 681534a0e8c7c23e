package hf

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"

	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/safetensors"
	"github.com/loomtrain/loom/models/vqgan"
)

// LWM's VQGAN (LargeWorldModel/LWM lwm/vqgan.py, read at 45808dbe) is
// released only as a pickled Flax params tree, the file that
// `--vqgan_checkpoint` names and VQGAN.__init__ reads with pickle.load and
// applies as {'params': tree}. Its key paths are Flax's: VQGANModel.setup
// names encoder, decoder, quantize, quant_conv and post_quant_conv; inside
// the @nn.compact modules each submodule is named ClassName_k, k counting
// that class's instances in call order:
//
//	encoder/Conv_0                                   conv_in
//	encoder/DownsamplingBlock_i/ResnetBlock_r/       GroupNorm_0, Conv_0, GroupNorm_1, Conv_1 (Dropout_0 has none), Conv_2 (1×1 shortcut)
//	encoder/DownsamplingBlock_i/Downsample_0/Conv_0  (i < levels-1)
//	encoder/MidBlock_0/ResnetBlock_{0,1}
//	encoder/GroupNorm_0, encoder/Conv_1              norm_out, conv_out
//	quant_conv, quantize/embeddings, post_quant_conv
//	decoder/Conv_0, decoder/MidBlock_0/ResnetBlock_{0,1}
//	decoder/UpsamplingBlock_k/ResnetBlock_r          r ≤ num_res_blocks; k counts calls, so level levels-1-k
//	decoder/UpsamplingBlock_k/Upsample_0/Conv_0      (level > 0)
//	decoder/GroupNorm_0, decoder/Conv_1
//
// Conv leaves are kernel [kh, kw, in, out] (HWIO) and bias [out]; GroupNorm
// leaves are scale and bias; embeddings is [codes, dim].

// LWMVQGANMapping maps LWM's Flax VQGAN params (names as OpenPickle gives
// them) onto vqgan.New(p, rng, prefix, c)'s parameters. Conv kernels are
// transposed HWIO → [out, in, kh, kw]; Export writes them back as HWIO.
func LWMVQGANMapping(c vqgan.Config, prefix string) Mapping {
	m := Mapping{Arch: "LWM VQGAN (Flax pickle)", Scope: []string{prefix}}
	conv := func(flax, loom string) {
		m.Entries = append(m.Entries,
			Entry{HF: flax + "/kernel", Loom: []string{loom + ".weight"}, Convert: hwioToOIHW, Invert: oihwToHWIO},
			Entry{HF: flax + "/bias", Loom: []string{loom + ".bias"}})
	}
	norm := func(flax, loom string) {
		m.Entries = append(m.Entries,
			Entry{HF: flax + "/scale", Loom: []string{loom + ".weight"}},
			Entry{HF: flax + "/bias", Loom: []string{loom + ".bias"}})
	}
	res := func(flax, loom string, in, out int) {
		norm(flax+"/GroupNorm_0", loom+".norm1")
		conv(flax+"/Conv_0", loom+".conv1")
		norm(flax+"/GroupNorm_1", loom+".norm2")
		conv(flax+"/Conv_1", loom+".conv2")
		if in != out {
			conv(flax+"/Conv_2", loom+".nin_shortcut")
		}
	}
	e, d := prefix+".encoder", prefix+".decoder"
	conv("encoder/Conv_0", e+".conv_in")
	ch := c.Base
	for i, mult := range c.Mult {
		for r := 0; r < c.NumRes; r++ {
			res(fmt.Sprintf("encoder/DownsamplingBlock_%d/ResnetBlock_%d", i, r), fmt.Sprintf("%s.down.%d.block.%d", e, i, r), ch, c.Base*mult)
			ch = c.Base * mult
		}
		if i < len(c.Mult)-1 {
			conv(fmt.Sprintf("encoder/DownsamplingBlock_%d/Downsample_0/Conv_0", i), fmt.Sprintf("%s.down.%d.downsample.conv", e, i))
		}
	}
	res("encoder/MidBlock_0/ResnetBlock_0", e+".mid.block_1", ch, ch)
	res("encoder/MidBlock_0/ResnetBlock_1", e+".mid.block_2", ch, ch)
	norm("encoder/GroupNorm_0", e+".norm_out")
	conv("encoder/Conv_1", e+".conv_out")
	conv("quant_conv", prefix+".quant_conv")
	m.Entries = append(m.Entries, Entry{HF: "quantize/embeddings", Loom: []string{prefix + ".quantize.embedding.weight"}})
	conv("post_quant_conv", prefix+".post_quant_conv")
	conv("decoder/Conv_0", d+".conv_in")
	res("decoder/MidBlock_0/ResnetBlock_0", d+".mid.block_1", ch, ch)
	res("decoder/MidBlock_0/ResnetBlock_1", d+".mid.block_2", ch, ch)
	for k := range c.Mult {
		i := len(c.Mult) - 1 - k
		for r := 0; r <= c.NumRes; r++ {
			res(fmt.Sprintf("decoder/UpsamplingBlock_%d/ResnetBlock_%d", k, r), fmt.Sprintf("%s.up.%d.block.%d", d, i, r), ch, c.Base*c.Mult[i])
			ch = c.Base * c.Mult[i]
		}
		if i > 0 {
			conv(fmt.Sprintf("decoder/UpsamplingBlock_%d/Upsample_0/Conv_0", k), fmt.Sprintf("%s.up.%d.upsample.conv", d, i))
		}
	}
	norm("decoder/GroupNorm_0", d+".norm_out")
	conv("decoder/Conv_1", d+".conv_out")
	return m
}

// hwioToOIHW transposes a Flax conv kernel [kh, kw, in, out] to PyTorch's
// [out, in, kh, kw].
func hwioToOIHW(shape []int, v []float32) ([]int, []float32, error) {
	return permute4(shape, v, [4]int{3, 2, 0, 1})
}

// oihwToHWIO is hwioToOIHW's inverse.
func oihwToHWIO(shape []int, v []float32) ([]int, []float32, error) {
	return permute4(shape, v, [4]int{2, 3, 1, 0})
}

// permute4 returns the 4-d tensor with axes reordered: out axis j is in
// axis perm[j].
func permute4(shape []int, v []float32, perm [4]int) ([]int, []float32, error) {
	if len(shape) != 4 {
		return nil, nil, fmt.Errorf("conv kernel of shape %v, want 4 dimensions", shape)
	}
	out := []int{shape[perm[0]], shape[perm[1]], shape[perm[2]], shape[perm[3]]}
	if v == nil {
		return out, nil, nil
	}
	var inStride [4]int
	s := 1
	for a := 3; a >= 0; a-- {
		inStride[a] = s
		s *= shape[a]
	}
	if len(v) != s {
		return nil, nil, fmt.Errorf("conv kernel of shape %v holds %d values", shape, len(v))
	}
	st := [4]int{inStride[perm[0]], inStride[perm[1]], inStride[perm[2]], inStride[perm[3]]}
	r := make([]float32, len(v))
	i := 0
	for a := 0; a < out[0]; a++ {
		for b := 0; b < out[1]; b++ {
			for c := 0; c < out[2]; c++ {
				base := a*st[0] + b*st[1] + c*st[2]
				for d := 0; d < out[3]; d++ {
					r[i] = v[base+d*st[3]]
					i++
				}
			}
		}
	}
	return out, r, nil
}

var (
	lwmDownRe = regexp.MustCompile(`^encoder/DownsamplingBlock_(\d+)/ResnetBlock_(\d+)/Conv_1/kernel$`)
	lwmUpRe   = regexp.MustCompile(`^decoder/UpsamplingBlock_\d+/ResnetBlock_(\d+)/`)
)

// LWMVQGANConfig reads the architecture from the shapes of an opened LWM
// VQGAN checkpoint: Base, Mult, NumRes, ZChannels, CodeDim, Codebook.
// What the shapes cannot say is LWM's fixed choice: 256-pixel images,
// GroupNorm's 32 groups (nn.GroupNorm()'s default; a smaller model of the
// same structure needs Groups set by the caller) and β = 0.25.
func LWMVQGANConfig(ck *Checkpoint) (vqgan.Config, error) {
	src := ck.Source()
	shape := func(name string) ([]int, error) {
		t, ok := ck.Info(name)
		if !ok {
			return nil, fmt.Errorf("%s: LWM VQGAN: missing tensor %q", src, name)
		}
		return t.Shape, nil
	}
	c := vqgan.Config{ImageSize: 256, Beta: 0.25}
	widths := map[int]int{}
	for _, t := range ck.Tensors() {
		if m := lwmDownRe.FindStringSubmatch(t.Name); m != nil {
			i, _ := strconv.Atoi(m[1])
			r, _ := strconv.Atoi(m[2])
			if len(t.Shape) != 4 || i > 64 || r > 64 {
				return c, fmt.Errorf("%s: LWM VQGAN: tensor %q has shape %v", src, t.Name, t.Shape)
			}
			widths[i] = t.Shape[3]
			c.NumRes = max(c.NumRes, r+1)
		}
	}
	in, err := shape("encoder/Conv_0/kernel")
	if err != nil {
		return c, err
	}
	if len(in) != 4 {
		return c, fmt.Errorf("%s: LWM VQGAN: encoder/Conv_0/kernel has shape %v", src, in)
	}
	c.Channels, c.Base = in[2], in[3]
	if len(widths) == 0 || c.Base == 0 {
		return c, fmt.Errorf("%s: LWM VQGAN: no encoder/DownsamplingBlock_*/ResnetBlock_*/Conv_1/kernel tensors", src)
	}
	for i := 0; i < len(widths); i++ {
		w, ok := widths[i]
		if !ok || w%c.Base != 0 {
			return c, fmt.Errorf("%s: LWM VQGAN: level %d width %d is not a multiple of %d (or the level is missing)", src, i, w, c.Base)
		}
		c.Mult = append(c.Mult, w/c.Base)
	}
	q, err := shape("quant_conv/kernel")
	if err != nil {
		return c, err
	}
	e, err := shape("quantize/embeddings")
	if err != nil {
		return c, err
	}
	if len(q) != 4 || len(e) != 2 || q[3] != e[1] {
		return c, fmt.Errorf("%s: LWM VQGAN: quant_conv/kernel %v and quantize/embeddings %v disagree", src, q, e)
	}
	c.ZChannels, c.CodeDim, c.Codebook = q[2], e[1], e[0]
	c.Groups = 1 // for the checks below: groups hold no parameters
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%s: LWM VQGAN: %w", src, err)
	}
	c.Groups = 32
	for _, t := range ck.Tensors() {
		if m := lwmUpRe.FindStringSubmatch(t.Name); m != nil {
			if r, _ := strconv.Atoi(m[1]); r > c.NumRes {
				return c, fmt.Errorf("%s: LWM VQGAN: %q: the decoder has more than num_res_blocks+1 = %d blocks per level", src, t.Name, c.NumRes+1)
			}
		}
	}
	return c, nil
}

// ConvertLWMVQGAN converts LWM's pickled VQGAN params (the
// --vqgan_checkpoint file's bytes) to safetensors tensors in Loom's names
// and layouts under "vqgan." (what models' VQGAN family and LWM's
// tokenizer build), checked by the same plan as a load: every LWM tensor
// placed, every Loom parameter covered, every shape right. Write them with
// safetensors.WriteFile once; models.Load reads the file thereafter. It
// returns the architecture LWMVQGANConfig read (Groups 32, LWM's).
func ConvertLWMVQGAN(pickle []byte) ([]safetensors.Tensor, vqgan.Config, error) {
	ctx := context.Background()
	ck, err := OpenPickle(ctx, "lwm vqgan pickle", pickle)
	if err != nil {
		return nil, vqgan.Config{}, err
	}
	c, err := LWMVQGANConfig(ck)
	if err != nil {
		return nil, c, err
	}
	p := nn.NewParams()
	build := c
	build.Groups = 1 // norms hold no groups: any count converts the same
	if _, err := vqgan.New(p, nn.Rng(0), "vqgan", build); err != nil {
		return nil, c, err
	}
	pl, err := Load(ctx, ck, LWMVQGANMapping(c, "vqgan"), p)
	if err != nil {
		return nil, c, err
	}
	if len(pl.RandomInit) > 0 {
		return nil, c, fmt.Errorf("lwm vqgan pickle: no tensor for %s", pl.RandomInit[0])
	}
	ts := p.StateTensors(false)
	slices.SortFunc(ts, func(a, b safetensors.Tensor) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return ts, c, nil
}
