"""Tiny LLaMA / Mistral / Qwen2 checkpoints in the Hugging Face layout and
reference logits for models/hf/llama_test.go.

Run with /usr/bin/python3 (torch 1.13, numpy; transformers and safetensors
are not installed) from models/hf/testdata:  /usr/bin/python3 gen_llama.py

The forward follows transformers' modeling code exactly, in float32,
transcribed op by op (same ops, same order, same dtypes):
  - src/transformers/models/llama/modeling_llama.py (stored 00227283, ~v4.38,
    and the later LlamaRotaryEmbedding that takes rope_init_fn): LlamaRMSNorm
    (upcast, x * rsqrt(mean(x^2) + eps), cast back, then * weight),
    LlamaRotaryEmbedding.forward (inv_freq[None,:,None] @ position_ids[:,None,:]
    in float32, cat(freqs, freqs), cos/sin * attention_scaling), rotate_half and
    apply_rotary_pos_emb, repeat_kv (expand + reshape = repeat_interleave on
    the head axis), eager attention (matmul(q, k^T) * head_dim**-0.5, additive
    causal mask over cache positions, softmax in float32, matmul v), LlamaMLP
    down(silu(gate(x)) * up(x)), q/k/v/o biases with attention_bias, gate/up/
    down biases with mlp_bias, explicit head_dim (v5 config), tied lm_head.
  - src/transformers/models/qwen2/modeling_qwen2.py: the same decoder with
    bias=True on q/k/v and none on o_proj.
  - src/transformers/modeling_rope_utils.py (stored 0044e3b3, and the v5
    _compute_yarn_parameters with original_max_position_embeddings,
    mscale/mscale_all_dim and truncate): _compute_default_rope_parameters,
    _compute_linear_scaling_rope_parameters, _compute_dynamic_ntk_parameters
    (seq_len = max(position_ids) + 1 as a tensor, as dynamic_rope_update
    passes it), _compute_llama3_parameters, _compute_yarn_parameters.
Weights are drawn in float32; for F16/BF16 checkpoints they are rounded to
that dtype, stored, and the reference runs on the rounded values upcast to
float32 (what Loom's loader produces).
"""
import json
import math
import os

import torch

import st

torch.manual_seed(0)
HERE = os.path.dirname(os.path.abspath(__file__))


# ---- modeling_rope_utils.py -------------------------------------------------

def rope_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def rope_params(cfg):
    """(rope_type, params dict, theta) from rope_scaling (v4) or rope_parameters (v5)."""
    rp = cfg.get("rope_parameters")
    if rp is not None:
        return rp.get("rope_type", rp.get("type", "default")), rp, rp.get("rope_theta", 10000.0)
    rs = cfg.get("rope_scaling")
    theta = cfg.get("rope_theta", 10000.0)
    if rs is None:
        return "default", {}, theta
    return rs.get("rope_type", rs.get("type")), rs, theta


def compute_default(base, dim):
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)), 1.0


def compute_inv_freq(cfg, seq_len=None):
    typ, rs, base = rope_params(cfg)
    dim = rope_dim(cfg)
    maxpos = cfg["max_position_embeddings"]
    if typ == "default":
        return compute_default(base, dim)
    factor = rs["factor"]
    if typ == "linear":
        inv_freq, af = compute_default(base, dim)
        inv_freq /= factor
        return inv_freq, af
    if typ == "dynamic":
        seq_len = seq_len if seq_len is not None and seq_len > maxpos else maxpos
        base = base * ((factor * seq_len / maxpos) - (factor - 1)) ** (dim / (dim - 2))
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        return inv_freq, 1.0
    if typ == "llama3":
        inv_freq, af = compute_default(base, dim)
        low_freq_factor = rs["low_freq_factor"]
        high_freq_factor = rs["high_freq_factor"]
        old_context_len = rs["original_max_position_embeddings"]
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
        is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        inv_freq_llama = torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)
        return inv_freq_llama, af
    if typ == "yarn":
        attention_factor = rs.get("attention_factor")
        mscale = rs.get("mscale")
        mscale_all_dim = rs.get("mscale_all_dim")
        original_max_position_embeddings = rs.get("original_max_position_embeddings") or maxpos

        def get_mscale(scale, mscale=1):
            if scale <= 1:
                return 1.0
            return 0.1 * mscale * math.log(scale) + 1.0

        if attention_factor is None:
            if mscale and mscale_all_dim:
                attention_factor = float(get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim))
            else:
                attention_factor = get_mscale(factor)
        beta_fast = rs.get("beta_fast") or 32
        beta_slow = rs.get("beta_slow") or 1

        def find_correction_dim(num_rotations, dim, base, max_position_embeddings):
            return (dim * math.log(max_position_embeddings / (num_rotations * 2 * math.pi))) / (2 * math.log(base))

        def find_correction_range(low_rot, high_rot, dim, base, max_position_embeddings, truncate):
            low = find_correction_dim(low_rot, dim, base, max_position_embeddings)
            high = find_correction_dim(high_rot, dim, base, max_position_embeddings)
            if truncate:
                low = math.floor(low)
                high = math.ceil(high)
            return max(low, 0), min(high, dim - 1)

        def linear_ramp_factor(min, max, dim):
            if min == max:
                max += 0.001
            linear_func = (torch.arange(dim, dtype=torch.float32) - min) / (max - min)
            return torch.clamp(linear_func, 0, 1)

        pos_freqs = base ** (torch.arange(0, dim, 2).float() / dim)
        inv_freq_extrapolation = 1.0 / pos_freqs
        inv_freq_interpolation = 1.0 / (factor * pos_freqs)
        truncate = rs.get("truncate", True)
        low, high = find_correction_range(beta_fast, beta_slow, dim, base, original_max_position_embeddings, truncate)
        inv_freq_extrapolation_factor = 1 - linear_ramp_factor(low, high, dim // 2).float()
        inv_freq = (inv_freq_interpolation * (1 - inv_freq_extrapolation_factor)
                    + inv_freq_extrapolation * inv_freq_extrapolation_factor)
        return inv_freq, attention_factor
    raise ValueError(typ)


# ---- modeling_llama.py --------------------------------------------------------

def rms_norm(x, w, eps):
    input_dtype = x.dtype
    x = x.to(torch.float32)
    variance = x.pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + eps)
    return w * x.to(input_dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(h, n_rep):
    b, kv, s, d = h.shape
    if n_rep == 1:
        return h
    h = h[:, :, None, :, :].expand(b, kv, n_rep, s, d)
    return h.reshape(b, kv * n_rep, s, d)


def linear(x, W, name):
    b = W.get(name + ".bias")
    return torch.nn.functional.linear(x, W[name + ".weight"], b)


def forward(cfg, W, ids, position_ids):
    H, nH = cfg["hidden_size"], cfg["num_attention_heads"]
    nKV = cfg.get("num_key_value_heads") or nH
    hd = rope_dim(cfg)
    eps = cfg["rms_norm_eps"]
    x = W["model.embed_tokens.weight"][ids][None]  # [1, T, H]
    T = x.shape[1]
    pos = torch.tensor(position_ids, dtype=torch.int64)[None]
    seq_len = torch.max(pos) + 1
    inv_freq, attention_scaling = compute_inv_freq(cfg, seq_len)
    inv_freq_expanded = inv_freq[None, :, None].float().expand(pos.shape[0], -1, 1)
    position_ids_expanded = pos[:, None, :].float()
    freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos = (emb.cos() * attention_scaling).to(x.dtype)
    sin = (emb.sin() * attention_scaling).to(x.dtype)
    mask = torch.full((T, T), torch.finfo(torch.float32).min).triu(1)[None, None]
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        res = x
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = linear(h, W, p + "self_attn.q_proj").view(1, T, -1, hd).transpose(1, 2)
        k = linear(h, W, p + "self_attn.k_proj").view(1, T, -1, hd).transpose(1, 2)
        v = linear(h, W, p + "self_attn.v_proj").view(1, T, -1, hd).transpose(1, 2)
        c, s = cos.unsqueeze(1), sin.unsqueeze(1)
        q = (q * c) + (rotate_half(q) * s)
        k = (k * c) + (rotate_half(k) * s)
        k = repeat_kv(k, nH // nKV)
        v = repeat_kv(v, nH // nKV)
        a = torch.matmul(q, k.transpose(2, 3)) * hd ** -0.5
        a = a + mask
        a = torch.nn.functional.softmax(a, dim=-1, dtype=torch.float32).to(q.dtype)
        o = torch.matmul(a, v).transpose(1, 2).contiguous().reshape(1, T, -1)
        x = res + linear(o, W, p + "self_attn.o_proj")
        res = x
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = linear(h, W, p + "mlp.gate_proj")
        u = linear(h, W, p + "mlp.up_proj")
        x = res + linear(torch.nn.functional.silu(g) * u, W, p + "mlp.down_proj")
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return torch.nn.functional.linear(x, head)[0], inv_freq


# ---- checkpoints --------------------------------------------------------------

def make_weights(cfg, qkv_bias):
    H, nH, I, V = cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"], cfg["vocab_size"]
    nKV = cfg.get("num_key_value_heads") or nH
    hd = rope_dim(cfg)
    ab, mb = cfg.get("attention_bias", False), cfg.get("mlp_bias", False)
    W = {}

    def lin(name, i, o, bias):
        W[name + ".weight"] = torch.randn(o, i) / math.sqrt(i)
        if bias:
            W[name + ".bias"] = 0.1 * torch.randn(o)

    W["model.embed_tokens.weight"] = torch.randn(V, H)
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        W[p + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(H)
        lin(p + "self_attn.q_proj", H, nH * hd, ab or qkv_bias)
        lin(p + "self_attn.k_proj", H, nKV * hd, ab or qkv_bias)
        lin(p + "self_attn.v_proj", H, nKV * hd, ab or qkv_bias)
        lin(p + "self_attn.o_proj", nH * hd, H, ab)
        W[p + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(H)
        lin(p + "mlp.gate_proj", H, I, mb)
        lin(p + "mlp.up_proj", H, I, mb)
        lin(p + "mlp.down_proj", I, H, mb)
    W["model.norm.weight"] = 1 + 0.1 * torch.randn(H)
    if not cfg.get("tie_word_embeddings", False):
        W["lm_head.weight"] = torch.randn(V, H) / math.sqrt(H)
    return W


def build(name, cfg, dtype, cases, qkv_bias=False, shard_bytes=None, extra=None):
    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    W = make_weights(cfg, qkv_bias)
    stored = {k: v.to(dtype) for k, v in W.items()}
    W = {k: v.float() for k, v in stored.items()}  # the rounded values, upcast
    if extra:
        stored.update(extra)
    if shard_bytes:
        st.save_sharded(d, stored, shard_bytes)
    else:
        st.save(os.path.join(d, "model.safetensors"), stored)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    out = []
    for tokens, pos in cases:
        with torch.no_grad():
            logits, inv = forward(cfg, W, torch.tensor(tokens), pos)
        out.append({"tokens": tokens, "pos": pos, "inv_freq": inv.tolist(), "logits": logits.tolist()})
    with open(os.path.join(d, "reference_logits.json"), "w") as f:
        json.dump({"checkpoint": name, "cases": out}, f)


def seq(n, V, start=0):
    g = torch.Generator().manual_seed(n * 7 + start)
    return torch.randint(0, V, (n,), generator=g).tolist()


base = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu", "bos_token_id": 1,
        "eos_token_id": 2}

# 1. GQA (4 heads, 2 KV heads), untied head, BF16, two shards with an index.
c1 = dict(base, vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
          num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
          rope_scaling=None, tie_word_embeddings=False, torch_dtype="bfloat16")
build("llama_gqa", c1, torch.bfloat16, [(seq(9, 64), list(range(9))), (seq(5, 64, 1), [3, 4, 5, 6, 7])],
      shard_bytes=12000)

# 2. Explicit head_dim (4 heads of 8 on hidden 24), attention_bias (o_proj too), mlp_bias,
#    v5 rope_parameters form, F16, and an old rotary inv_freq buffer to skip.
c2 = dict(base, vocab_size=48, hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
          num_key_value_heads=2, head_dim=8, max_position_embeddings=64, rms_norm_eps=1e-6,
          rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, attention_bias=True, mlp_bias=True,
          tie_word_embeddings=False, torch_dtype="float16")
build("llama_headdim", c2, torch.float16, [(seq(7, 48), list(range(7)))],
      extra={"model.layers.0.self_attn.rotary_emb.inv_freq": compute_default(500000.0, 8)[0]})

# 3. Qwen2: q/k/v bias, no o bias, tied embeddings, theta 1e6, F32.
c3 = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_act": "silu", "vocab_size": 40,
      "hidden_size": 32, "intermediate_size": 56, "num_hidden_layers": 2, "num_attention_heads": 4,
      "num_key_value_heads": 2, "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
      "tie_word_embeddings": True, "use_sliding_window": False, "sliding_window": None, "torch_dtype": "float32"}
build("llama_qwen2", c3, torch.float32, [(seq(8, 40), list(range(8)))], qkv_bias=True)

# 4-7. RoPE scaling, with positions far beyond the (original) context.
far = [0, 1, 2, 40, 41, 300, 301, 1000]
small = dict(base, vocab_size=32, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=1, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
             torch_dtype="float32")
build("llama_linear", dict(small, max_position_embeddings=32, rope_scaling={"type": "linear", "factor": 2.0}),
      torch.float32, [(seq(8, 32), far), (seq(6, 32, 2), list(range(6)))])
build("llama_dynamic", dict(small, model_type="mistral", architectures=["MistralForCausalLM"],
                            max_position_embeddings=32, sliding_window=4096,
                            rope_scaling={"type": "dynamic", "factor": 2.0}),
      torch.float32, [(seq(8, 32), far), (seq(6, 32, 2), list(range(6)))])
build("llama_llama3", dict(small, max_position_embeddings=256,
                           rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
      torch.float32, [(seq(8, 32), far)])
build("llama_yarn", dict(small, max_position_embeddings=4096,
                         rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}),
      torch.float32, [(seq(8, 32), [0, 1, 2, 900, 1500, 2000, 3000, 4000])])
