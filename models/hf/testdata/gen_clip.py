"""Tiny CLIP vision checkpoints and their PyTorch reference outputs.

Run from models/hf/testdata with /usr/bin/python3 (torch, numpy; no
transformers): writes clip/ (CLIPVisionModel, F32, with the old
position_ids buffer), clip_model/ (a whole CLIPModel, F16, two shards with
an index, text tower included) and clip_bicubic.json (F.interpolate
bicubic on grids of several sizes).

The modules below follow transformers
src/transformers/models/clip/modeling_clip.py (huggingface/transformers
000f1ffd, read through the library's code search) class by class, with the
same attribute names so that state_dict() gives the checkpoint's tensor
names:
  - CLIPVisionEmbeddings: class_embedding is a bare [H] Parameter, the patch
    Conv2d has bias=False, position_embedding is an nn.Embedding of
    (S/p)^2+1 rows; forward concatenates [class; patches] and adds the
    positions, or with interpolate_pos_encoding=True the CLS position kept
    and the patch grid resized by F.interpolate(size=(h/p, w/p),
    mode="bicubic", align_corners=False) (interpolate_pos_encoding).
  - CLIPAttention (eager_attention_forward): q/k/v/out_proj with biases,
    scale head_dim**-0.5, softmax in float32 (here float64).
  - CLIPMLP: fc1 -> ACT2FN[hidden_act] -> fc2; quick_gelu is x*sigmoid(1.702x).
  - CLIPEncoderLayer: pre-LN residual blocks, LayerNorm eps=layer_norm_eps.
  - CLIPVisionTransformer: embeddings -> pre_layrnorm -> encoder;
    pooler_output = post_layernorm(last_hidden_state[:, 0]); hidden_states
    are the encoder input followed by every layer's output.
The reference runs in float64 on the weights as stored (F16 weights are
widened), so the Go side's float32 error is what the comparison measures.
"""
import json
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

import st

ACT = {
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "gelu": F.gelu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
}


class Cfg(dict):
    __getattr__ = dict.__getitem__


class CLIPVisionEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_dim, self.image_size, self.patch_size = c.hidden_size, c.image_size, c.patch_size
        self.class_embedding = nn.Parameter(torch.randn(self.embed_dim))
        self.patch_embedding = nn.Conv2d(c.num_channels, self.embed_dim, c.patch_size, c.patch_size, bias=False)
        self.num_positions = (c.image_size // c.patch_size) ** 2 + 1
        self.position_embedding = nn.Embedding(self.num_positions, self.embed_dim)

    def interpolate_pos_encoding(self, embeddings, height, width):
        num_patches = embeddings.shape[1] - 1
        position_embedding = self.position_embedding.weight.unsqueeze(0)
        num_positions = position_embedding.shape[1] - 1
        if num_patches == num_positions and height == width:
            return position_embedding
        class_pos_embed = position_embedding[:, :1]
        patch_pos_embed = position_embedding[:, 1:]
        dim = embeddings.shape[-1]
        new_height, new_width = height // self.patch_size, width // self.patch_size
        s = int(num_positions ** 0.5)
        patch_pos_embed = patch_pos_embed.reshape(1, s, s, dim).permute(0, 3, 1, 2)
        patch_pos_embed = F.interpolate(patch_pos_embed, size=(new_height, new_width), mode="bicubic", align_corners=False)
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((class_pos_embed, patch_pos_embed), dim=1)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        b, _, h, w = pixel_values.shape
        patch = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        emb = torch.cat([self.class_embedding.expand(b, 1, -1), patch], dim=1)
        if interpolate_pos_encoding:
            return emb + self.interpolate_pos_encoding(emb, h, w)
        return emb + self.position_embedding.weight.unsqueeze(0)


class CLIPAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_dim, self.num_heads = c.hidden_size, c.num_attention_heads
        self.head_dim = self.embed_dim // self.num_heads
        self.scale = self.head_dim ** -0.5
        self.k_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.v_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.q_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.out_proj = nn.Linear(self.embed_dim, self.embed_dim)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
        a = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
        o = torch.matmul(a, v).transpose(1, 2).reshape(b, t, -1)
        return self.out_proj(o)


class CLIPMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.act = ACT[c.hidden_act]
        self.fc1 = nn.Linear(c.hidden_size, c.intermediate_size)
        self.fc2 = nn.Linear(c.intermediate_size, c.hidden_size)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, c, attn=CLIPAttention):
        super().__init__()
        self.self_attn = attn(c)
        self.layer_norm1 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlp = CLIPMLP(c)
        self.layer_norm2 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, c, attn=CLIPAttention):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(c, attn) for _ in range(c.num_hidden_layers)])

    def forward(self, x):
        hidden = [x]
        for layer in self.layers:
            x = layer(x)
            hidden.append(x)
        return x, hidden


class CLIPVisionTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = CLIPVisionEmbeddings(c)
        self.pre_layrnorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.encoder = CLIPEncoder(c)
        self.post_layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        x = self.pre_layrnorm(self.embeddings(pixel_values, interpolate_pos_encoding))
        last, hidden = self.encoder(x)
        return {"last_hidden_state": last, "pooler_output": self.post_layernorm(last[:, 0, :]), "hidden_states": hidden}


class CLIPVisionModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.vision_model = CLIPVisionTransformer(c)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        return self.vision_model(pixel_values, interpolate_pos_encoding)


def randomize(module, gen, dtype, scale=0.3):
    """Random weights (LayerNorm weights near 1) rounded to the storage dtype."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            v = torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or "layrnorm.weight" in name \
                    or "layernorm.weight" in name:
                v = 1 + v
            p.copy_(v.to(dtype).to(torch.float64))


def state(module, dtype, prefix=""):
    return {prefix + k: v.to(dtype) for k, v in module.state_dict().items()}


def flat(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def outputs(out, key_prefix=""):
    return {
        key_prefix + "last_hidden_state": flat(out["last_hidden_state"]),
        key_prefix + "pooler_output": flat(out["pooler_output"]) if out.get("pooler_output") is not None else None,
        key_prefix + "hidden_states_-2": flat(out["hidden_states"][-2]),
    }


def write_config(d, cfg):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
        f.write("\n")


VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, num_channels=3,
              image_size=12, patch_size=4, hidden_act="quick_gelu", layer_norm_eps=1e-5)


def reference(model, gen, sizes):
    """Forward on a batch of 2 images at each (h, w); the first size is the
    training resolution (no interpolation)."""
    ref = {}
    for i, (h, w) in enumerate(sizes):
        x = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
        out = model(x, interpolate_pos_encoding=i > 0)
        key = "" if i == 0 else "%dx%d_" % (h, w)
        ref[key + "pixel_values"] = flat(x)
        ref[key + "shape"] = [2, 3, h, w]
        ref.update(outputs(out, key))
    return ref


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    sizes = [(12, 12), (20, 20), (16, 8), (14, 15)]

    # 1. CLIPVisionModel, F32, with the position_ids buffer old checkpoints saved.
    c = Cfg(VISION)
    m = CLIPVisionModel(c).double()
    randomize(m, gen, torch.float32)
    t = state(m, torch.float32)
    t["vision_model.embeddings.position_ids"] = torch.arange(10, dtype=torch.int64).reshape(1, 10)
    write_config("clip", dict(VISION, architectures=["CLIPVisionModel"], model_type="clip_vision_model",
                              projection_dim=8, torch_dtype="float32"))
    st.save("clip/model.safetensors", t)
    with torch.no_grad():
        write_json("clip_out.json", reference(m, gen, sizes))

    # 2. A whole CLIPModel in F16, two shards: the vision tower is read
    # through the prefix "vision_model.", the text tower and projections
    # are ignored.
    c = Cfg(dict(VISION, hidden_act="gelu"))  # a second activation
    m = CLIPVisionModel(c).double()
    randomize(m, gen, torch.float16)
    t = state(m, torch.float16)
    for name, shape in [("text_model.embeddings.token_embedding.weight", [50, 8]),
                        ("text_model.embeddings.position_embedding.weight", [7, 8]),
                        ("text_model.encoder.layers.0.self_attn.q_proj.weight", [8, 8]),
                        ("text_model.final_layer_norm.weight", [8]),
                        ("text_projection.weight", [6, 8]), ("visual_projection.weight", [6, 16])]:
        t[name] = torch.randn(shape, generator=gen).to(torch.float16)
    t["logit_scale"] = torch.tensor(2.6592, dtype=torch.float16)
    os.makedirs("clip_model", exist_ok=True)
    st.save_sharded("clip_model", t, 12000)
    vc = dict(VISION, hidden_act="gelu", model_type="clip_vision_model")
    write_config("clip_model", dict(architectures=["CLIPModel"], model_type="clip", projection_dim=6,
                                    logit_scale_init_value=2.6592, torch_dtype="float16", vision_config=vc,
                                    text_config=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, vocab_size=50,
                                                     max_position_embeddings=7, model_type="clip_text_model")))
    with torch.no_grad():
        write_json("clip_model_out.json", reference(m, gen, sizes[:1]))

    # 3. F.interpolate(bicubic, align_corners=False) on [1, C, h, w] grids:
    # up, down, non-square and identity.
    cases = []
    for (ih, iw), (oh, ow) in [((3, 3), (5, 5)), ((4, 4), (3, 3)), ((3, 3), (4, 2)), ((2, 2), (7, 7)),
                               ((5, 5), (5, 5)), ((24, 24), (37, 37)), ((16, 16), (7, 11)), ((1, 3), (2, 5))]:
        x = torch.randn(1, 3, ih, iw, generator=gen, dtype=torch.float64)
        y = F.interpolate(x, size=(oh, ow), mode="bicubic", align_corners=False)
        cases.append({"in": [ih, iw], "out": [oh, ow], "x": flat(x), "y": flat(y)})
    write_json("clip_bicubic.json", cases)


if __name__ == "__main__":
    main()
