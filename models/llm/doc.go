// Package llm is the LLaMA-style decoder-only language model every family
// puts its visual tokens into (Touvron et al. 2023, "Llama 2", arXiv
// 2307.09288 §2.2, and the Hugging Face LlamaForCausalLM layout): token
// embedding, blocks of pre-RMSNorm causal self-attention with rotary
// positions (configurable θ and explicit position ids) and a SwiGLU MLP
// (Shazeer 2020), a final RMSNorm and an output head that is either tied to
// the embedding or separate.
//
// QKVBias adds biases to the q/k/v projections, as Qwen-7B (Qwen-VL's LLM)
// has (c_attn bias=True); Vicuna/LLaMA-2 have none.
//
// Packed sequences: Forward takes per-token segment ids and position ids,
// so several documents share one row without seeing each other (LWM
// llama.py segment_ids; recipes.md §5 "masked sequence packing").
//
// Parameter names follow Hugging Face (model.embed_tokens.weight,
// model.layers.N.self_attn.q_proj.weight, …, lm_head.weight) under a prefix.
package llm
