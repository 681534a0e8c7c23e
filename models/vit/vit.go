package vit

import (
	"fmt"
	"math/rand/v2"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
)

// Config sizes a ViT.
type Config struct {
	ImageSize  int    // training resolution in pixels (square; ⌊ImageSize/PatchSize⌋² patches)
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
	// PostNorm says where the final LayerNorm (HF post_layernorm) applies:
	// nowhere (""), to the pooled class token only (CLIP) or to the whole
	// last-layer sequence (SigLIP; EVA as BLIP-2 stores it).
	PostNorm PostNorm `json:",omitempty"`
	// NoQKVBias builds the blocks' q, k and v projections without biases
	// (EVA with qkv_bias false; with qkv_bias true EVA has q and v biases
	// and a key bias fixed at zero, which Loom keeps as a zeroed k bias).
	NoQKVBias bool `json:",omitempty"`
	// Head adds SigLIP's attention-pooling head (a learned probe attending
	// to the last layer, then LayerNorm and MLP): the pooled output.
	Head bool `json:",omitempty"`
}

// PostNorm places a ViT's final LayerNorm.
type PostNorm string

// The placements of the final LayerNorm.
const (
	// PostNormNone builds no final LayerNorm (LLaVA reads the penultimate
	// layer; Loom's BLIP-2 keeps LAVIS's ln_vision outside the ViT).
	PostNormNone PostNorm = ""
	// PostNormPooled applies it to the class token only, giving the pooled
	// output (CLIPVisionTransformer: post_layernorm(last_hidden_state[:, 0])).
	PostNormPooled PostNorm = "pooled"
	// PostNormAll applies it to every token of the last layer
	// (SiglipVisionTransformer; Blip2VisionModel, whose pooled output
	// applies it once more to the class token).
	PostNormAll PostNorm = "all"
)

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
	case c.PatchSize <= 0 || c.ImageSize < c.PatchSize:
		return fmt.Errorf("vit: image_size %d holds no patch of patch_size %d", c.ImageSize, c.PatchSize)
	case c.Heads <= 0 || c.Width%c.Heads != 0:
		return fmt.Errorf("vit: width %d is not a multiple of heads %d", c.Width, c.Heads)
	case c.Layers <= 0 || c.MLPDim <= 0 || c.Channels <= 0:
		return fmt.Errorf("vit: layers, mlp_dim and channels must be positive (got %d, %d, %d)", c.Layers, c.MLPDim, c.Channels)
	case c.PostNorm != PostNormNone && c.PostNorm != PostNormPooled && c.PostNorm != PostNormAll:
		return fmt.Errorf("vit: post_norm %q: want %q, %q or %q", c.PostNorm, PostNormNone, PostNormPooled, PostNormAll)
	case c.PostNorm == PostNormPooled && !c.ClassToken:
		return fmt.Errorf("vit: post_norm %q needs a class token", c.PostNorm)
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
	mlp := nn.LinearParams(w, c.MLPDim, true) + nn.LinearParams(c.MLPDim, w, true)
	block := 2*w + nn.MHAParams(w, w, !c.NoQKVBias, true) + 2*w + mlp
	n += c.Layers * block
	if c.PostNorm != PostNormNone {
		n += 2 * w
	}
	if c.Head {
		n += w + nn.MHAParams(w, w, true, true) + 2*w + mlp
	}
	return n
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
	post      *nn.LayerNorm
	head      *head
}

// head is SigLIP's SiglipMultiheadAttentionPoolingHead.
type head struct {
	probe *kernels.Tensor // [W]
	attn  nn.MHA
	ln    nn.LayerNorm
	mlp   nn.MLP
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
			attn: nn.NewMHA(p, rng, [4]string{n + "self_attn.q_proj", n + "self_attn.k_proj", n + "self_attn.v_proj", n + "self_attn.out_proj"}, w, w, c.Heads, !c.NoQKVBias, true),
			ln2:  nn.NewLayerNorm(p, n+"layer_norm2", w, c.Eps),
			mlp:  nn.MLP{FC1: nn.NewLinear(p, rng, n+"mlp.fc1", w, c.MLPDim, true), FC2: nn.NewLinear(p, rng, n+"mlp.fc2", c.MLPDim, w, true), Act: c.Act},
		})
	}
	if c.PostNorm != PostNormNone {
		ln := nn.NewLayerNorm(p, prefix+".post_layernorm", w, c.Eps)
		v.post = &ln
	}
	if c.Head {
		n := prefix + ".head."
		v.head = &head{
			probe: p.Add(n+"probe", w).InitNormal(rng, nn.InitStd),
			attn:  nn.NewMHA(p, rng, [4]string{n + "attention.q_proj", n + "attention.k_proj", n + "attention.v_proj", n + "attention.out_proj"}, w, w, c.Heads, true, true),
			ln:    nn.NewLayerNorm(p, n+"layernorm", w, c.Eps),
			mlp:   nn.MLP{FC1: nn.NewLinear(p, rng, n+"mlp.fc1", w, c.MLPDim, true), FC2: nn.NewLinear(p, rng, n+"mlp.fc2", c.MLPDim, w, true), Act: c.Act},
		}
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

// Forward encodes images [B, C, H, W] (a grid of ⌊H/P⌋×⌊W/P⌋ patches, the
// remainder left out as by a stride-P convolution; a grid other than the
// learned one interpolates the positions) and returns
// features [B, tokens, Width]. With PostNorm PostNormAll the last layer's
// features are normalised (SigLIP's and BLIP-2's last_hidden_state); the
// penultimate layer's never are (HF hidden_states[-2]).
func (v *ViT) Forward(tp *kernels.Tape, images *kernels.Tensor, sel Select) *kernels.Tensor {
	x := v.embed(tp, images)
	layers := len(v.blocks)
	if sel == PenultimatePatches {
		layers--
	}
	for _, blk := range v.blocks[:layers] {
		x = blk.forward(tp, x)
	}
	if sel != PenultimatePatches && v.Cfg.PostNorm == PostNormAll {
		x = v.post.Forward(tp, x)
	}
	if sel != LastAll && v.Cfg.ClassToken {
		x = tp.Slice(x, 1, 1, x.Shape[1])
	}
	return x
}

// Output is what Hugging Face's vision models return
// (BaseModelOutputWithPooling).
type Output struct {
	// Hidden is hidden_states, filled when Encode is asked for it:
	// Hidden[0] is the embeddings (after the pre-LayerNorm), Hidden[i] the
	// output of block i, so Hidden[len-2] is LLaVA's vision_feature_layer -2.
	Hidden []*kernels.Tensor
	// Last is last_hidden_state [B, N, W]: the last block's tokens, class
	// token included, normalised when PostNorm is PostNormAll.
	Last *kernels.Tensor
	// Pooled is pooler_output [B, W]: SigLIP's head applied to Last, or
	// else the final LayerNorm applied to Last's class token (CLIP; EVA,
	// where Last is already normalised, so twice as in Blip2VisionModel);
	// nil when the config has neither.
	Pooled *kernels.Tensor
}

// Encode runs every block and returns the outputs of HF's vision models;
// hidden keeps each block's output (hidden_states).
func (v *ViT) Encode(tp *kernels.Tape, images *kernels.Tensor, hidden bool) Output {
	var out Output
	x := v.embed(tp, images)
	if hidden {
		out.Hidden = append(out.Hidden, x)
	}
	for _, blk := range v.blocks {
		x = blk.forward(tp, x)
		if hidden {
			out.Hidden = append(out.Hidden, x)
		}
	}
	if v.Cfg.PostNorm == PostNormAll {
		x = v.post.Forward(tp, x)
	}
	out.Last = x
	b, w := x.Shape[0], v.Cfg.Width
	switch {
	case v.head != nil:
		out.Pooled = v.head.forward(tp, x)
	case v.post != nil && v.Cfg.ClassToken:
		out.Pooled = v.post.Forward(tp, tp.Reshape(tp.Slice(x, 1, 0, 1), b, w))
	}
	return out
}

// forward is one pre-LN block: x + attn(ln1(x)), then x + mlp(ln2(x)).
func (blk block) forward(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	x = tp.Add(x, blk.attn.Forward(tp, blk.ln1.Forward(tp, x), nil, kernels.AttnOptions{}, nil))
	return tp.Add(x, blk.mlp.Forward(tp, blk.ln2.Forward(tp, x)))
}

// forward pools x [B, N, W] into [B, W]: the probe attends to x (as
// nn.MultiheadAttention(probe, x, x)), then a + mlp(ln(a)).
func (h *head) forward(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	b, w := x.Shape[0], x.Shape[2]
	probe := tp.Add(kernels.Zeros(b, 1, w), tp.Reshape(h.probe, 1, 1, w))
	a := h.attn.Forward(tp, probe, x, kernels.AttnOptions{}, nil)
	a = tp.Add(a, h.mlp.Forward(tp, h.ln.Forward(tp, a)))
	return tp.Reshape(a, b, w)
}

// embed returns the patch embeddings with positions, class token and
// pre-LayerNorm: the input of the first block [B, N, W].
func (v *ViT) embed(tp *kernels.Tape, images *kernels.Tensor) *kernels.Tensor {
	c := v.Cfg
	b, ch, h, w := images.Shape[0], images.Shape[1], images.Shape[2], images.Shape[3]
	ps := c.PatchSize
	if ch != c.Channels || h < ps || w < ps {
		panic(fmt.Sprintf("vit: images %v: want [B, %d, H, W] with H and W at least %d", images.Shape, c.Channels, ps))
	}
	gh, gw := h/ps, w/ps
	if h%ps != 0 || w%ps != 0 {
		// A stride-p convolution without padding leaves out the last rows
		// and columns (SigLIP so400m: 384 px in 14 px patches, 27×27).
		images = tp.Slice(tp.Slice(images, 2, 0, gh*ps), 3, 0, gw*ps)
	}
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
	return x
}
