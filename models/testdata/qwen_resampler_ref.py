# PyTorch reference for qwen_golden_test.go: Qwen-VL's Resampler.forward
# (HF Qwen/Qwen-VL visual.py, as vllm layers/resampler.py) in torch 1.13:
#   x = ln_kv(kv_proj(x)); q = ln_q(query)
#   out = attn(q + pos_embed, x + get_abs_pos(pos_embed, N), x)
#   then ln_post and x @ proj.
# pos_embed is MAE's get_2d_sincos_pos_embed on the query grid; get_abs_pos
# resizes it bicubically (align_corners=False) to the image grid.
import json, struct, numpy as np, torch
import torch.nn.functional as F

raw = open("qwen_resampler.safetensors", "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
hdr = json.loads(raw[8 : 8 + n]); hdr.pop("__metadata__")
data = bytearray(raw[8 + n :])
W = {k: torch.frombuffer(data[e["data_offsets"][0]:e["data_offsets"][1]], dtype=torch.float32).reshape(e["shape"]).double()
     for k, e in hdr.items()}
x = W.pop("input")
D, NH, G = 16, 2, 2

def sincos_1d(d, pos):
    omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)
def sincos_2d(d, g):
    grid = np.meshgrid(np.arange(g, dtype=np.float64), np.arange(g, dtype=np.float64))
    return np.concatenate([sincos_1d(d // 2, grid[0]), sincos_1d(d // 2, grid[1])], axis=1)
pos = torch.from_numpy(sincos_2d(D, G))
def get_abs_pos(p, tgt):
    s = int(round(tgt ** 0.5))
    return F.interpolate(p.reshape(1, G, G, -1).permute(0, 3, 1, 2), size=(s, s), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).flatten(0, 2)

A = "visual.attn_pool."
def ln(t, n): return F.layer_norm(t, (D,), W[n + ".weight"], W[n + ".bias"], 1e-6)
def lin(t, n): return t @ W[n + ".weight"].T + W[n + ".bias"]
kv = ln(x @ W[A + "kv_proj.weight"].T, A + "ln_kv")
q = ln(W[A + "query"], A + "ln_q")
B, N = x.shape[0], x.shape[1]
Q = (q + pos).expand(B, -1, -1)
K = kv + get_abs_pos(pos, N)
V = kv
def heads(t, n): return lin(t, A + "attn." + n).view(B, -1, NH, D // NH).transpose(1, 2)
o = ((heads(Q, "q_proj") @ heads(K, "k_proj").transpose(-1, -2)) / (D // NH) ** 0.5).softmax(-1) @ heads(V, "v_proj")
o = lin(o.transpose(1, 2).reshape(B, -1, D), A + "attn.out_proj")
out = ln(o, "visual.ln_post") @ W["visual.proj"]
json.dump(out.reshape(-1).tolist(), open("qwen_resampler_out.json", "w"))
print("ok", out.shape)
