package vit

import (
	"fmt"
	"math/rand/v2"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
)

// Config sizes a ViT.
type Config struct {
	ImageSize  int    // training resolution in pixels (square)
	PatchSize  int    // patch side in pixels
	Channels   int    // image channels (3)
	Width      int    // hidden size
	Layers     int    // number of blocks built
	Heads      int    // attention heads
	MLPDim     int    // hidden size of the MLP
	PosGrid    int    // side of the learned position grid; 0 means ImageSize/PatchSize
	ClassToken bool   // prepend a learned class token (CLIP, EVA)
	PatchBias  bool   // the patch convolution has a bias (EVA: yes, CLIP: no)
	PreNorm    bool   // LayerNorm after the embeddings (CLIP ln_pre)
	Act        nn.Act // MLP activation
	Eps        float32
}

// Grid is the side of the learned position grid.
func (c Config) Grid() int {
	if c.PosGrid > 0 {
		return c.PosGrid
	}
	return c.ImageSize / c.PatchSize
}

// Validate names the first inconsistent field.
func (c Config) Validate() error {
	switch {
	case c.PatchSize <= 0 || c.ImageSize%c.PatchSize != 0:
		return fmt.Errorf("vit: image_size %d is not a multiple of patch_size %d", c.ImageSize, c.PatchSize)
	case c.Heads <= 0 || c.Width%c.Heads != 0:
		return fmt.Errorf("vit: width %d is not a multiple of heads %d", c.Width, c.Heads)
	case c.Layers <= 0 || c.MLPDim <= 0 || c.Channels <= 0:
		return fmt.Errorf("vit: layers, mlp_dim and channels must be positive (got %d, %d, %d)", c.Layers, c.MLPDim, c.Channels)
	}
	return nil
}

// ParamCount counts the parameters New creates, without allocating.
func ParamCount(c Config) int {
	w := c.Width
	n := c.Channels * c.PatchSize * c.PatchSize * w
	if c.PatchBias {
		n += w
	}
	pos := c.Grid() * c.Grid()
	if c.ClassToken {
		n += w
		pos++
	}
	n += pos * w
	if c.PreNorm {
		n += 2 * w
	}
	block := 2*w + nn.MHAParams(w, w, true, true) + 2*w + nn.LinearParams(w, c.MLPDim, true) + nn.LinearParams(c.MLPDim, w, true)
	return n + c.Layers*block
}

type block struct {
	ln1, ln2 nn.LayerNorm
	attn     nn.MHA
	mlp      nn.MLP
}

// ViT is a built encoder.
type ViT struct {
	Cfg       Config
	patch     *kernels.Tensor // [W, C, P, P]
	patchBias *kernels.Tensor
	cls       *kernels.Tensor // [W]
	pos       *kernels.Tensor // [(cls) + G², W]
	pre       *nn.LayerNorm
	blocks    []block
}

// New adds the encoder's parameters under prefix (e.g. "vit").
func New(p *nn.Params, rng *rand.Rand, prefix string, c Config) (*ViT, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Eps == 0 {
		c.Eps = 1e-5
	}
	v := &ViT{Cfg: c}
	w := c.Width
	v.patch = p.Add(prefix+".embeddings.patch_embedding.weight", w, c.Channels, c.PatchSize, c.PatchSize).InitNormal(rng, nn.InitStd)
	if c.PatchBias {
		v.patchBias = p.Add(prefix+".embeddings.patch_embedding.bias", w)
	}
	npos := c.Grid() * c.Grid()
	if c.ClassToken {
		v.cls = p.Add(prefix+".embeddings.class_embedding", w).InitNormal(rng, nn.InitStd)
		npos++
	}
	v.pos = p.Add(prefix+".embeddings.position_embedding.weight", npos, w).InitNormal(rng, nn.InitStd)
	if c.PreNorm {
		ln := nn.NewLayerNorm(p, prefix+".pre_layrnorm", w, c.Eps) // HF CLIP spelling
		v.pre = &ln
	}
	for i := 0; i < c.Layers; i++ {
		n := fmt.Sprintf("%s.encoder.layers.%d.", prefix, i)
		v.blocks = append(v.blocks, block{
			ln1:  nn.NewLayerNorm(p, n+"layer_norm1", w, c.Eps),
			attn: nn.NewMHA(p, rng, [4]string{n + "self_attn.q_proj", n + "self_attn.k_proj", n + "self_attn.v_proj", n + "self_attn.out_proj"}, w, w, c.Heads, true, true),
			ln2:  nn.NewLayerNorm(p, n+"layer_norm2", w, c.Eps),
			mlp:  nn.MLP{FC1: nn.NewLinear(p, rng, n+"mlp.fc1", w, c.MLPDim, true), FC2: nn.NewLinear(p, rng, n+"mlp.fc2", c.MLPDim, w, true), Act: c.Act},
		})
	}
	return v, nil
}

// Select picks the features Forward returns.
type Select int

const (
	// LastAll is every token (class token included) of the last block:
	// BLIP-2's ViT output, fed to the Q-Former's cross-attention.
	LastAll Select = iota
	// LastPatches is the last block's patch tokens, class token dropped
	// (Qwen-VL).
	LastPatches
	// PenultimatePatches is the second-to-last block's patch tokens, class
	// token dropped (LLaVA-1.5 / VILA: select_layer -2, select_feature patch).
	PenultimatePatches
)

// Tokens returns how many feature tokens Forward returns for an image of
// the given side in pixels.
func (v *ViT) Tokens(imageSize int, sel Select) int {
	g := imageSize / v.Cfg.PatchSize
	if sel == LastAll && v.Cfg.ClassToken {
		return g*g + 1
	}
	return g * g
}

// Forward encodes images [B, C, H, W] (H = W, a multiple of the patch) and
// returns features [B, tokens, Width].
func (v *ViT) Forward(tp *kernels.Tape, images *kernels.Tensor, sel Select) *kernels.Tensor {
	c := v.Cfg
	b, ch, h, w := images.Shape[0], images.Shape[1], images.Shape[2], images.Shape[3]
	ps := c.PatchSize
	if ch != c.Channels || h%ps != 0 || w%ps != 0 {
		panic(fmt.Sprintf("vit: images %v: want [B, %d, H, W] with H and W multiples of %d", images.Shape, c.Channels, ps))
	}
	gh, gw := h/ps, w/ps
	// Patch embedding: a convolution with kernel = stride = patch.
	x := tp.PatchEmbed(images, v.patch, v.patchBias) // [B, gh·gw, W]

	g := c.Grid()
	start := 0
	if c.ClassToken {
		start = 1
	}
	pos := tp.Slice(v.pos, 0, start, start+g*g)
	if gh != g || gw != g {
		pos = tp.Matmul(nn.BicubicMatrix(g, g, gh, gw), pos)
	}
	x = tp.Add(x, pos) // [B, N, W] + [N, W]
	if c.ClassToken {
		cls := tp.Add(tp.Reshape(v.cls, 1, 1, c.Width), tp.Reshape(tp.Slice(v.pos, 0, 0, 1), 1, 1, c.Width))
		cls = tp.Add(kernels.Zeros(b, 1, c.Width), cls)
		x = tp.Concat(1, cls, x)
	}
	if v.pre != nil {
		x = v.pre.Forward(tp, x)
	}
	layers := len(v.blocks)
	if sel == PenultimatePatches {
		layers--
	}
	for _, blk := range v.blocks[:layers] {
		x = tp.Add(x, blk.attn.Forward(tp, blk.ln1.Forward(tp, x), nil, kernels.AttnOptions{}, nil))
		x = tp.Add(x, blk.mlp.Forward(tp, blk.ln2.Forward(tp, x)))
	}
	if sel != LastAll && c.ClassToken {
		x = tp.Slice(x, 1, 1, x.Shape[1])
	}
	return x
}
