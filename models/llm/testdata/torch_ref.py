# PyTorch reference for golden_test.go: reads tiny.safetensors (written by
# Loom: json + struct, torch.frombuffer) and computes Hugging Face
# LlamaForCausalLM's forward written out by hand (RMSNorm, rotate-half RoPE
# with theta, causal attention restricted to equal segment ids, SwiGLU),
# then writes torch_logits.json. Run: /usr/bin/python3 torch_ref.py
import json, struct, torch

raw = open("tiny.safetensors", "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
hdr = json.loads(raw[8 : 8 + n]); hdr.pop("__metadata__")
data = bytearray(raw[8 + n :])
W = {k: torch.frombuffer(data[e["data_offsets"][0]:e["data_offsets"][1]], dtype=torch.float32).reshape(e["shape"]).double()
     for k, e in hdr.items()}

H, NH, L, THETA, EPS = 8, 2, 2, 500.0, 1e-6
D = H // NH
tokens = [3, 7, 1, 19, 4, 4, 8]
seg = [0, 0, 0, 1, 1, 1, 1]
pos = [0, 1, 2, 0, 1, 2, 3]
T = len(tokens)

def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w

inv = THETA ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
ang = torch.tensor(pos, dtype=torch.float64)[:, None] * inv[None, :]
cos = torch.cat([ang.cos(), ang.cos()], -1)  # [T, D]
sin = torch.cat([ang.sin(), ang.sin()], -1)
def rope(x):  # x [NH, T, D]
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin

allowed = torch.tensor([[seg[i] == seg[j] and j <= i for j in range(T)] for i in range(T)])
x = W["model.embed_tokens.weight"][tokens]
for l in range(L):
    p = f"model.layers.{l}."
    h = rms(x, W[p + "input_layernorm.weight"])
    q = h @ W[p + "self_attn.q_proj.weight"].T + W[p + "self_attn.q_proj.bias"]
    k = h @ W[p + "self_attn.k_proj.weight"].T + W[p + "self_attn.k_proj.bias"]
    v = h @ W[p + "self_attn.v_proj.weight"].T + W[p + "self_attn.v_proj.bias"]
    q, k, v = (t.view(T, NH, D).transpose(0, 1) for t in (q, k, v))
    q, k = rope(q), rope(k)
    s = q @ k.transpose(-1, -2) / D ** 0.5
    s = s.masked_fill(~allowed, float("-inf"))
    o = (s.softmax(-1) @ v).transpose(0, 1).reshape(T, H)
    x = x + o @ W[p + "self_attn.o_proj.weight"].T
    h = rms(x, W[p + "post_attention_layernorm.weight"])
    g = h @ W[p + "mlp.gate_proj.weight"].T
    u = h @ W[p + "mlp.up_proj.weight"].T
    x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
logits = rms(x, W["model.norm.weight"]) @ W["lm_head.weight"].T
json.dump({"tokens": tokens, "seg": seg, "pos": pos, "logits": logits.tolist()}, open("torch_logits.json", "w"))
print("ok", logits.shape)
