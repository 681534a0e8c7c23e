// Package vit is the Vision Transformer image encoder (Dosovitskiy et al.
// 2021, arXiv 2010.11929 §3.1) in the pre-LN form of CLIP, EVA-CLIP and
// OpenCLIP that the four families use: a patch embedding (a convolution
// with kernel = stride = patch), an optional class token, learned absolute
// positions, an optional LayerNorm before the blocks (CLIP's ln_pre), and
// blocks x + attn(ln1(x)), x + mlp(ln2(x)).
//
// Positions are learned on a PosGrid×PosGrid grid (the pre-training
// resolution). At another resolution they are resampled bicubically on
// every forward pass (Qwen-VL visual.py get_abs_pos: 16×16 at 224 px →
// 32×32 at 448 px), through a constant interpolation matrix, so the learned
// table keeps receiving gradients.
//
// Forward can return the last block's patch tokens (Qwen-VL: "all patch
// tokens from the last layer") or the penultimate block's output without
// the class token (LLaVA-1.5 clip_encoder.py mm_vision_select_layer=-2,
// select_feature='patch'); BLIP-2 uses all tokens of its ViT, whose last
// layer was removed (LAVIS eva_vit.py depth=39 of 40).
//
// Encode returns what Hugging Face's vision models return: every layer's
// hidden state, the last one (normalised when PostNorm is PostNormAll:
// SigLIP, and EVA as BLIP-2 stores it) and the pooled output (CLIP's
// post_layernorm on the class token, or SigLIP's attention-pooling Head).
// Package models/hf maps CLIP, SigLIP and EVA checkpoints onto this one
// structure (docs/pretrained.md).
//
// Parameter names follow Hugging Face's CLIPVisionModel
// (embeddings.patch_embedding.weight [W, C, P, P], encoder.layers.N.self_attn.q_proj.weight, …).
package vit
