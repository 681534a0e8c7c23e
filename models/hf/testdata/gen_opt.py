"""Tiny OPT checkpoints in the Hugging Face layout and reference logits
for models/hf/opt_test.go.

Run with /usr/bin/python3 (torch 1.13) from models/hf/testdata:
    /usr/bin/python3 gen_opt.py

The forward follows transformers' src/transformers/models/opt/modeling_opt.py
(stored 0184d208) op by op in float32: OPTLearnedPositionalEmbedding
(cumsum(attention_mask)·mask − 1, looked up at +2; all-ones mask here, so
positions 0..T−1), OPTDecoder (embed_tokens, project_in when
word_embed_proj_dim ≠ hidden_size, + positions, layers, final_layer_norm only
with do_layer_norm_before, project_out), OPTDecoderLayer (self_attn_layer_norm
before attention or after the residual, likewise final_layer_norm around
fc1 → relu → fc2), OPTAttention (q_proj(x) * head_dim**-0.5, attention called
with scaling 1.0: matmul(q, k^T) + causal mask, softmax in float32, matmul v,
out_proj), nn.LayerNorm's eps 1e-5, lm_head tied to embed_tokens.
"""
import json
import math
import os

import torch

import st

torch.manual_seed(1)
HERE = os.path.dirname(os.path.abspath(__file__))
F = torch.nn.functional


def lin(x, W, n):
    return F.linear(x, W[n + ".weight"], W.get(n + ".bias"))


def ln(x, W, n):
    return F.layer_norm(x, (x.shape[-1],), W[n + ".weight"], W[n + ".bias"], 1e-5)


def forward(cfg, W, ids):
    H, nH = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = H // nH
    pre = cfg["do_layer_norm_before"]
    T = len(ids)
    x = W["embed_tokens.weight"][ids][None]
    if "project_in.weight" in W:
        x = F.linear(x, W["project_in.weight"])
    mask1 = torch.ones(1, T, dtype=torch.int64)
    position_ids = (torch.cumsum(mask1, dim=1) * mask1 - 1).long()
    x = x + W["embed_positions.weight"][position_ids + 2]
    mask = torch.full((T, T), torch.finfo(torch.float32).min).triu(1)[None, None]
    for i in range(cfg["num_hidden_layers"]):
        p = "layers.%d." % i
        res = x
        if pre:
            x = ln(x, W, p + "self_attn_layer_norm")
        q = (lin(x, W, p + "self_attn.q_proj") * hd ** -0.5).view(1, T, nH, hd).transpose(1, 2)
        k = lin(x, W, p + "self_attn.k_proj").view(1, T, nH, hd).transpose(1, 2)
        v = lin(x, W, p + "self_attn.v_proj").view(1, T, nH, hd).transpose(1, 2)
        a = torch.matmul(q, k.transpose(-1, -2)) * 1.0 + mask
        a = F.softmax(a, dim=-1, dtype=torch.float32).to(q.dtype)
        o = torch.matmul(a, v).transpose(1, 2).contiguous().reshape(1, T, -1)
        x = res + lin(o, W, p + "self_attn.out_proj")
        if not pre:
            x = ln(x, W, p + "self_attn_layer_norm")
        shape = x.shape
        x = x.reshape(-1, x.size(-1))
        res = x
        if pre:
            x = ln(x, W, p + "final_layer_norm")
        x = lin(torch.relu(lin(x, W, p + "fc1")), W, p + "fc2")
        x = (res + x).view(shape)
        if not pre:
            x = ln(x, W, p + "final_layer_norm")
    if pre:
        x = ln(x, W, "final_layer_norm")
    if "project_out.weight" in W:
        x = F.linear(x, W["project_out.weight"])
    return F.linear(x, W["embed_tokens.weight"])[0]


def build(name, cfg, dtype, key_prefix, cases):
    H, V, Fd, P = cfg["hidden_size"], cfg["vocab_size"], cfg["ffn_dim"], cfg["word_embed_proj_dim"]
    W = {"embed_tokens.weight": torch.randn(V, P),
         "embed_positions.weight": torch.randn(cfg["max_position_embeddings"] + 2, H)}
    if P != H:
        W["project_in.weight"] = torch.randn(H, P) / math.sqrt(P)
        W["project_out.weight"] = torch.randn(P, H) / math.sqrt(H)
    if cfg["do_layer_norm_before"]:
        W["final_layer_norm.weight"] = 1 + 0.1 * torch.randn(H)
        W["final_layer_norm.bias"] = 0.1 * torch.randn(H)
    for i in range(cfg["num_hidden_layers"]):
        p = "layers.%d." % i
        for n, (o, ii) in {"self_attn.q_proj": (H, H), "self_attn.k_proj": (H, H), "self_attn.v_proj": (H, H),
                           "self_attn.out_proj": (H, H), "fc1": (Fd, H), "fc2": (H, Fd)}.items():
            W[p + n + ".weight"] = torch.randn(o, ii) / math.sqrt(ii)
            W[p + n + ".bias"] = 0.1 * torch.randn(o)
        for n in ("self_attn_layer_norm", "final_layer_norm"):
            W[p + n + ".weight"] = 1 + 0.1 * torch.randn(H)
            W[p + n + ".bias"] = 0.1 * torch.randn(H)
    stored = {k: v.to(dtype) for k, v in W.items()}
    W = {k: v.float() for k, v in stored.items()}
    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    st.save(os.path.join(d, "model.safetensors"), {key_prefix + k: v for k, v in stored.items()})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    out = []
    for tokens in cases:
        with torch.no_grad():
            out.append({"tokens": tokens, "pos": None, "logits": forward(cfg, W, torch.tensor(tokens)).tolist()})
    with open(os.path.join(d, "reference_logits.json"), "w") as f:
        json.dump({"checkpoint": name, "cases": out}, f)


base = {"model_type": "opt", "architectures": ["OPTForCausalLM"], "activation_function": "relu",
        "enable_bias": True, "layer_norm_elementwise_affine": True, "bos_token_id": 2, "eos_token_id": 2,
        "pad_token_id": 1}
# Pre-LN (opt-125m … 6.7b, BLIP-2's), F16, keys as the hub stores them: decoder.* without model.
build("opt_preln", dict(base, vocab_size=50, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                        max_position_embeddings=16, do_layer_norm_before=True, word_embed_proj_dim=32,
                        torch_dtype="float16"),
      torch.float16, "decoder.", [[2, 7, 11, 3, 40, 9, 9, 1, 30, 5], [2, 4, 6]])
# Post-LN with project_in/out (opt-350m's layout), F32, transformers' model.decoder.* names.
build("opt_350m", dict(base, vocab_size=40, hidden_size=32, num_hidden_layers=2, ffn_dim=48, num_attention_heads=2,
                       max_position_embeddings=16, do_layer_norm_before=False, word_embed_proj_dim=16,
                       torch_dtype="float32"),
      torch.float32, "model.decoder.", [[2, 5, 8, 13, 21, 34, 1, 0]])
