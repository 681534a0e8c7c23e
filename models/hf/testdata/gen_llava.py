"""Tiny LlavaForConditionalGeneration checkpoints and reference logits: run
from models/hf/testdata with /usr/bin/python3; writes llava/ (the legacy
layout, F32), llava_new/ (the transformers >= 4.52 layout, BF16, the same
values: weights are drawn as BF16-representable numbers) and
llava_out.json.

Follows transformers src/transformers/models/llava/modeling_llava.py
(huggingface/transformers 00d3cdbe, read through the library's code
search):
  - LlavaModel.get_image_features: vision_tower(pixel_values,
    output_hidden_states=True).hidden_states[vision_feature_layer] (-2),
    "default" strategy drops the class token ([:, 1:]), then
    LlavaMultiModalProjector: linear_2(ACT2FN["gelu"](linear_1(x))) with
    multimodal_projector_bias.
  - LlavaModel.forward: inputs_embeds = embed_tokens(input_ids);
    masked_scatter of the image features into the positions where
    input_ids == image_token_id (in order); language_model(inputs_embeds).
  - LlavaForConditionalGeneration: lm_head on the decoder output; the loss
    with labels is the mean next-token cross-entropy over labels != -100
    (image positions are -100 here, as the llava-hf processor's collators do).
  - _checkpoint_conversion_mapping gives the new layout's names:
    ^language_model.model -> model.language_model, ^vision_tower ->
    model.vision_tower, ^multi_modal_projector -> model.multi_modal_projector,
    ^language_model.lm_head -> lm_head.
The vision tower is gen_clip.py's CLIPVisionModel (modeling_clip.py); the
decoder is a float64 transcription of modeling_llama.py's LlamaModel on
inputs_embeds: LlamaRMSNorm (x * rsqrt(mean(x^2) + eps) * weight), default
RoPE (inv_freq = 1/theta^(arange(0, d, 2)/d), cat(freqs, freqs),
rotate_half), grouped-query repeat_kv, causal eager attention with scale
head_dim**-0.5, LlamaMLP down(silu(gate(x)) * up(x)), final norm.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

import gen_clip as g
import st

VISION = dict(g.VISION, hidden_size=16, num_hidden_layers=3)
TEXT = dict(model_type="llama", vocab_size=40, hidden_size=24, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
            rope_theta=10000.0, hidden_act="silu", tie_word_embeddings=False)
IMAGE = 38


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def llama(W, x, c, prefix):
    """LlamaModel on inputs_embeds x [B, T, H], in x's dtype (float64 here;
    float32 in trainer/hfbench's timed step)."""
    b, t, _ = x.shape
    nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]
    hd = c["hidden_size"] // nh
    inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    freqs = (torch.arange(t, dtype=torch.float64)[:, None] * inv_freq[None, :]).to(x.dtype)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None, None], emb.sin()[None, None]
    mask = torch.full((t, t), float("-inf"), dtype=x.dtype).triu(1)
    eps = c["rms_norm_eps"]
    for i in range(c["num_hidden_layers"]):
        p = prefix + "layers.%d." % i
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = F.linear(h, W[p + "self_attn.q_proj.weight"]).view(b, t, nh, hd).transpose(1, 2)
        k = F.linear(h, W[p + "self_attn.k_proj.weight"]).view(b, t, nkv, hd).transpose(1, 2)
        v = F.linear(h, W[p + "self_attn.v_proj.weight"]).view(b, t, nkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k[:, :, None].expand(b, nkv, nh // nkv, t, hd).reshape(b, nh, t, hd)
        v = v[:, :, None].expand(b, nkv, nh // nkv, t, hd).reshape(b, nh, t, hd)
        a = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * hd ** -0.5 + mask, dim=-1)
        o = torch.matmul(a, v).transpose(1, 2).reshape(b, t, -1)
        x = x + F.linear(o, W[p + "self_attn.o_proj.weight"])
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        x = x + F.linear(F.silu(F.linear(h, W[p + "mlp.gate_proj.weight"])) * F.linear(h, W[p + "mlp.up_proj.weight"]),
                         W[p + "mlp.down_proj.weight"])
    return rms_norm(x, W[prefix + "norm.weight"], eps)


def bf16(t):
    return t.to(torch.bfloat16).to(torch.float64)


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(99)
    c = g.Cfg(VISION)
    tower = g.CLIPVisionModel(c).double()
    g.randomize(tower, gen, torch.bfloat16)
    W = {"vision_tower." + k: v for k, v in tower.state_dict().items()}
    H, V, I, hv = TEXT["hidden_size"], TEXT["vocab_size"], TEXT["intermediate_size"], VISION["hidden_size"]
    kv = H // TEXT["num_attention_heads"] * TEXT["num_key_value_heads"]

    def rnd(*shape, scale=None, one=False):
        s = scale if scale is not None else 1 / math.sqrt(shape[-1])
        v = torch.randn(shape, generator=gen, dtype=torch.float64) * s
        return bf16(1 + v if one else v)

    W["multi_modal_projector.linear_1.weight"] = rnd(H, hv)
    W["multi_modal_projector.linear_1.bias"] = rnd(H, scale=0.1)
    W["multi_modal_projector.linear_2.weight"] = rnd(H, H)
    W["multi_modal_projector.linear_2.bias"] = rnd(H, scale=0.1)
    lm = "language_model.model."
    W[lm + "embed_tokens.weight"] = rnd(V, H, scale=1.0)
    for i in range(TEXT["num_hidden_layers"]):
        p = lm + "layers.%d." % i
        W[p + "input_layernorm.weight"] = rnd(H, scale=0.1, one=True)
        W[p + "post_attention_layernorm.weight"] = rnd(H, scale=0.1, one=True)
        W[p + "self_attn.q_proj.weight"] = rnd(H, H)
        W[p + "self_attn.k_proj.weight"] = rnd(kv, H)
        W[p + "self_attn.v_proj.weight"] = rnd(kv, H)
        W[p + "self_attn.o_proj.weight"] = rnd(H, H)
        W[p + "mlp.gate_proj.weight"] = rnd(I, H)
        W[p + "mlp.up_proj.weight"] = rnd(I, H)
        W[p + "mlp.down_proj.weight"] = rnd(H, I)
    W[lm + "norm.weight"] = rnd(H, scale=0.1, one=True)
    W["language_model.lm_head.weight"] = rnd(V, H)

    cfg = dict(architectures=["LlavaForConditionalGeneration"], model_type="llava", image_token_index=IMAGE,
               projector_hidden_act="gelu", vision_feature_layer=-2, vision_feature_select_strategy="default",
               image_seq_length=9, pad_token_id=39, torch_dtype="float32",
               vision_config=dict(VISION, model_type="clip_vision_model", projection_dim=8),
               text_config=dict(TEXT))
    g.write_config("llava", cfg)
    st.save("llava/model.safetensors", {k: v.float() for k, v in W.items()})
    new = {}
    for k, v in W.items():
        for a, b in [("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head."),
                     ("vision_tower.", "model.vision_tower."),
                     ("multi_modal_projector.", "model.multi_modal_projector.")]:
            if k.startswith(a):
                k = b + k[len(a):]
                break
        new[k] = v.to(torch.bfloat16)
    g.write_config("llava_new", dict(cfg, torch_dtype="bfloat16"))
    st.save("llava_new/model.safetensors", new)

    # Two rows of 14 tokens, each with one image (9 placeholder ids).
    k = 9
    ids = torch.tensor([[1, 5] + [IMAGE] * k + [7, 8, 3], [1] + [IMAGE] * k + [4, 9, 12, 2]])
    with torch.no_grad():
        px = torch.randn(2, 3, 12, 12, generator=gen, dtype=torch.float64)
        feat = tower(px)["hidden_states"][-2][:, 1:]
        feat = F.linear(feat, W["multi_modal_projector.linear_1.weight"], W["multi_modal_projector.linear_1.bias"])
        feat = F.linear(F.gelu(feat), W["multi_modal_projector.linear_2.weight"], W["multi_modal_projector.linear_2.bias"])
        emb = W[lm + "embed_tokens.weight"][ids]
        mask = (ids == IMAGE).unsqueeze(-1).expand_as(emb)
        emb = emb.masked_scatter(mask, feat)
        h = llama(W, emb, TEXT, lm)
        logits = F.linear(h, W["language_model.lm_head.weight"])
        labels = ids.masked_fill(ids == IMAGE, -100)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)
    g.write_json("llava_out.json", {"pixel_values": g.flat(px), "shape": [2, 3, 12, 12], "input_ids": g.flat(ids),
                                    "image_features": g.flat(feat), "logits": g.flat(logits), "loss": [float(loss)]})


if __name__ == "__main__":
    main()
