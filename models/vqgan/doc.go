// Package vqgan is LWM's image tokenizer: a VQGAN-style convolutional
// autoencoder with a codebook (Esser et al. 2021, "Taming Transformers",
// arXiv 2012.09841 §3.1; van den Oord et al. 2017, VQ-VAE, eq. 3). LWM uses
// a pretrained, frozen VQGAN that maps a 256×256 image to 16×16 codes from
// 8192 (LargeWorldModel/LWM lwm/vqgan.py VQGANConfig at f45d2b7: channel
// multipliers (1, 2, 2, 4, 6) → 16× downsampling, 2 residual blocks per
// level, code dimension 64, commitment 0.25); here it is also trainable
// by Loom on image data.
//
// Encoder: conv_in, per level NumRes residual blocks (GroupNorm → SiLU →
// conv3×3, twice, with a 1×1 shortcut when the width changes) and a stride-2
// conv between levels, two middle blocks, GroupNorm → SiLU → conv_out to
// the code dimension. The decoder mirrors it with nearest-neighbour 2×
// upsampling + conv3×3. Quantisation is kernels.VectorQuantize (nearest
// code, straight-through gradient, codebook + β·commitment loss). The
// training loss is L = ‖x − x̂‖² + codebook + β·commitment; the perceptual
// and adversarial terms of the full VQGAN objective are not implemented,
// and attention blocks are left out (as in MaskGIT's VQGAN, which aMUSEd's
// follows). Downsampling pads symmetrically (taming pads right/bottom only).
package vqgan
