// Package llm is the LLaMA-style decoder-only language model every family
// puts its visual tokens into (Touvron et al. 2023, "Llama 2", arXiv
// 2307.09288 §2.2, and the Hugging Face LlamaForCausalLM layout): token
// embedding, blocks of pre-RMSNorm causal self-attention with rotary
// positions (configurable θ and explicit position ids) and a SwiGLU MLP
// (Shazeer 2020), a final RMSNorm and an output head that is either tied to
// the embedding or separate.
//
// QKVBias adds biases to the q/k/v projections, as Qwen-7B (Qwen-VL's LLM)
// and Qwen2 have (c_attn bias=True); Vicuna/LLaMA-2 have none. AttnBias
// (LLaMA attention_bias) adds them to o_proj too, MLPBias to the SwiGLU.
// KVHeads gives grouped-query attention (query head h reads KV head
// h/(Heads/KVHeads)), HeadDim an explicit head width, RoPE the
// rope_scaling variants (linear, dynamic NTK, llama3, yarn) with
// transformers' float32 frequency arithmetic.
//
// Kind "opt" builds an OPT decoder instead (BLIP-2's LLM; see opt.go):
// learned positions, LayerNorm, ReLU FFN, behind the same EmbedTokens,
// Forward and Logits.
//
// Packed sequences: Forward takes per-token segment ids and position ids,
// so several documents share one row without seeing each other (LWM
// llama.py segment_ids; recipes.md §5 "masked sequence packing").
//
// Parameter names follow Hugging Face (model.embed_tokens.weight,
// model.layers.N.self_attn.q_proj.weight, …, lm_head.weight; OPT
// model.decoder.…) under a prefix; models/hf maps checkpoints onto them
// (docs/pretrained.md).
package llm
