// Package vqgan is LWM's image tokenizer: a VQGAN-style convolutional
// autoencoder with a codebook (Esser et al. 2021, "Taming Transformers",
// arXiv 2012.09841 §3.1; van den Oord et al. 2017, VQ-VAE, eq. 3). LWM uses
// a pretrained, frozen VQGAN that maps a 256×256 image to 16×16 codes from
// 8192 (LargeWorldModel/LWM lwm/vqgan.py VQGANConfig at 45808dbe: channel
// multipliers (1, 2, 2, 4, 6) on 128 → 16× downsampling, 2 residual blocks
// per level, z_channels 64, code dimension 64, commitment 0.25, no
// attention); here it is also trainable by Loom on image data.
//
// The architecture is LWM's module for module (lwm/vqgan.py Encoder,
// Decoder, ResnetBlock, Downsample, Upsample, VectorQuantizer), so that its
// released weights load unchanged (hf.LWMVQGANMapping, hf.ConvertLWMVQGAN):
//
//   - Encoder: conv_in 3×3; per level NumRes residual blocks (GroupNorm →
//     SiLU → conv3×3, twice, with a 1×1 shortcut when the width changes)
//     and, after every level but the last, a Downsample that pads one zero
//     row and column at the bottom/right and applies a 3×3 stride-2 conv
//     with no other padding; two middle blocks; GroupNorm → SiLU → conv_out
//     3×3 to ZChannels; quant_conv 1×1 to CodeDim.
//   - Quantiser: the nearest code in squared Euclidean distance, ties to
//     the lowest index (kernels.VectorQuantize: straight-through gradient,
//     codebook + β·commitment loss).
//   - Decoder: post_quant_conv 1×1 to ZChannels, conv_in 3×3 to the last
//     level's width, two middle blocks, then the levels in reverse with
//     NumRes+1 residual blocks each and, before every level but the first,
//     nearest-neighbour 2× upsampling + conv3×3; GroupNorm → SiLU →
//     conv_out 3×3. Decode clips the image to [-1, 1] as LWM's decode does.
//   - GroupNorm is flax.linen's default: contiguous channel groups (Groups,
//     32 in LWM), eps 1e-6.
//
// The training loss is L = ‖x − x̂‖² (unclipped x̂) + codebook +
// β·commitment; the perceptual and adversarial terms of the full VQGAN
// objective are not implemented, and attention blocks are left out (LWM's
// config has none: attn_resolutions (), no_attn_mid_block).
package vqgan
