# PyTorch reference for golden_test.go: a CLIP-style ViT (HF
# CLIPVisionTransformer's equations written out in torch 1.13: conv patch
# embedding, class token, learned positions bicubic-interpolated from 2x2 to
# 3x3 as Qwen-VL get_abs_pos, pre-LN, quick GELU), on the weights and input
# of tiny.safetensors. Writes torch_out.json. Run: /usr/bin/python3 torch_ref.py
import json, struct, torch
import torch.nn.functional as F

raw = open("tiny.safetensors", "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
hdr = json.loads(raw[8 : 8 + n]); hdr.pop("__metadata__")
data = bytearray(raw[8 + n :])
W = {k: torch.frombuffer(data[e["data_offsets"][0]:e["data_offsets"][1]], dtype=torch.float32).reshape(e["shape"]).double()
     for k, e in hdr.items()}
x = W.pop("input")
Wd, NH, L, EPS, G = 8, 2, 2, 1e-5, 2
P = "vit."

def ln(x, n):
    return F.layer_norm(x, (Wd,), W[P + n + ".weight"], W[P + n + ".bias"], EPS)

def lin(x, n):
    return x @ W[P + n + ".weight"].T + W[P + n + ".bias"]

e = F.conv2d(x, W[P + "embeddings.patch_embedding.weight"], W[P + "embeddings.patch_embedding.bias"], stride=4)
B, _, gh, gw = e.shape
e = e.flatten(2).transpose(1, 2)  # [B, 9, W]
pos = W[P + "embeddings.position_embedding.weight"]
cls_pos, patch_pos = pos[:1], pos[1:]
pp = patch_pos.reshape(1, G, G, Wd).permute(0, 3, 1, 2)
pp = F.interpolate(pp, size=(gh, gw), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(gh * gw, Wd)
cls = (W[P + "embeddings.class_embedding"] + cls_pos).expand(B, 1, Wd)
h = torch.cat([cls, e + pp], 1)
h = ln(h, "pre_layrnorm")
hidden = []
for l in range(L):
    p = f"encoder.layers.{l}."
    a = ln(h, p + "layer_norm1")
    T = a.shape[1]
    q, k, v = (lin(a, p + "self_attn." + s).view(B, T, NH, Wd // NH).transpose(1, 2) for s in ("q_proj", "k_proj", "v_proj"))
    o = ((q @ k.transpose(-1, -2)) / (Wd // NH) ** 0.5).softmax(-1) @ v
    h = h + lin(o.transpose(1, 2).reshape(B, T, Wd), p + "self_attn.out_proj")
    m = lin(ln(h, p + "layer_norm2"), p + "mlp.fc1")
    m = m * torch.sigmoid(1.702 * m)
    h = h + lin(m, p + "mlp.fc2")
    hidden.append(h)
json.dump({"last_all": hidden[-1].reshape(-1).tolist(), "penultimate_patches": hidden[-2][:, 1:].reshape(-1).tolist()},
          open("torch_out.json", "w"))
print("ok", hidden[-1].shape)
