#!/usr/bin/python3
"""Writes golden.safetensors: inputs, outputs and gradients of every kernels op,
computed by PyTorch (Debian's python3-torch 1.13) in float64 from float32 inputs.

Run from the repository root:  /usr/bin/python3 kernels/testdata/golden/gen.py
The Go tests (kernels/golden_test.go) read the committed file; CI needs no PyTorch.

Naming: "<case>.<tensor>"; inputs keep their names, "<case>.out" is the output,
"<case>.dout" the upstream gradient, "<case>.d<input>" the input gradients.
"""
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

torch.manual_seed(0)
T = {}


def put(name, a):
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        if a.dtype == torch.bfloat16:
            T[name] = ("BF16", a.view(torch.int16).numpy().view(np.uint16))
            return
        a = a.numpy()
    a = np.asarray(a)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.dtype.kind == "f":
        T[name] = ("F32", a.astype("<f4"))
    elif a.dtype.kind in "iub":
        T[name] = ("I32", a.astype("<i4"))
    else:
        raise ValueError(name)


def rnd(*shape, scale=1.0):
    return (torch.randn(tuple(shape)) * scale).float()


def case(name, inputs, fn, ints=None):
    """inputs: dict of float32 tensors; fn(**float64 tensors) -> output tensor."""
    xs = {k: v.double().requires_grad_() for k, v in inputs.items()}
    out = fn(**xs)
    dout = rnd(*out.shape)
    out.backward(dout.double())
    for k, v in inputs.items():
        put(f"{name}.{k}", v)
        put(f"{name}.d{k}", xs[k].grad.float())
    put(f"{name}.out", out.detach().float())
    put(f"{name}.dout", dout)
    for k, v in (ints or {}).items():
        put(f"{name}.{k}", np.asarray(v, dtype=np.int32))


# ---- linear algebra -------------------------------------------------------
case("matmul", {"a": rnd(2, 5, 7), "b": rnd(2, 7, 3)}, lambda a, b: a @ b)
case("matmul_tt", {"a": rnd(2, 7, 5), "b": rnd(3, 7)}, lambda a, b: a.transpose(-1, -2) @ b.t())
case("linear", {"x": rnd(2, 3, 6), "w": rnd(4, 6), "b": rnd(4)}, lambda x, w, b: F.linear(x, w, b))

# ---- elementwise ----------------------------------------------------------
case("add_bcast", {"a": rnd(2, 3, 4), "b": rnd(3, 1)}, lambda a, b: a + b)
case("mul_bcast", {"a": rnd(2, 1, 4), "b": rnd(3, 4)}, lambda a, b: a * b)
case("gelu_tanh", {"x": rnd(5, 6, scale=3)}, lambda x: F.gelu(x, approximate="tanh"))
case("gelu_erf", {"x": rnd(5, 6, scale=3)}, lambda x: F.gelu(x))
case("silu", {"x": rnd(5, 6, scale=3)}, lambda x: F.silu(x))
case("swiglu", {"g": rnd(4, 6, scale=2), "u": rnd(4, 6)}, lambda g, u: F.silu(g) * u)
case("sum", {"x": rnd(3, 5)}, lambda x: x.sum())
case("mean", {"x": rnd(3, 5)}, lambda x: x.mean())
case("sum_axis1", {"x": rnd(2, 3, 4)}, lambda x: x.sum(1))
case("softmax", {"x": rnd(4, 9, scale=3)}, lambda x: F.softmax(x, -1))
case("log_softmax", {"x": rnd(4, 9, scale=3)}, lambda x: F.log_softmax(x, -1))

# ---- losses ---------------------------------------------------------------
tgt = [3, 0, -100, 7, 2, 9, -100, 1]
case("ce", {"x": rnd(8, 10, scale=2)}, lambda x: F.cross_entropy(x, torch.tensor(tgt)), {"targets": tgt})
case("ce_smooth", {"x": rnd(8, 10, scale=2)},
     lambda x: F.cross_entropy(x, torch.tensor(tgt), label_smoothing=0.1), {"targets": tgt})
wts = torch.tensor([1.0, 0.5, 1.0, 2.0, 0.0, 1.5, 1.0, 0.25])
put("ce_weighted.weights", wts)
def ce_w(x):
    t = torch.tensor(tgt)
    l = F.cross_entropy(x, t, reduction="none")
    w = wts.double() * (t != -100).double()
    return (w * l).sum() / w.sum()
case("ce_weighted", {"x": rnd(8, 10, scale=2)}, ce_w, {"targets": tgt})

# ---- norms ----------------------------------------------------------------
case("layernorm", {"x": rnd(3, 4, 16, scale=2), "w": rnd(16), "b": rnd(16)},
     lambda x, w, b: F.layer_norm(x, (16,), w, b, 1e-5))
case("rmsnorm", {"x": rnd(6, 16, scale=2), "w": rnd(16)},
     lambda x, w: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w)

# ---- movement ---------------------------------------------------------------
case("permute", {"x": rnd(2, 3, 4, 5)}, lambda x: x.permute(2, 0, 3, 1).contiguous())
case("concat", {"a": rnd(2, 3, 4), "b": rnd(2, 2, 4)}, lambda a, b: torch.cat([a, b], 1))
case("slice", {"x": rnd(3, 7, 2)}, lambda x: x[:, 2:6, :].contiguous())
ids = [4, 1, 1, 0, 9, 4]
case("embedding", {"w": rnd(10, 5)}, lambda w: F.embedding(torch.tensor(ids), w), {"ids": ids})

# ---- RoPE (HF rotate_half) --------------------------------------------------
def rope(x, pos, theta):
    d = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    fr = pos.double()[:, None] * inv[None, :]
    emb = torch.cat([fr, fr], -1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin
pos = [0, 1, 2, 3, 0, 1, 2, 0]  # packed segments restart at 0
case("rope", {"x": rnd(8, 2, 8)}, lambda x: rope(x, torch.tensor(pos), 10000.0), {"pos": pos})
case("rope_theta1m", {"x": rnd(8, 2, 8)}, lambda x: rope(x, torch.tensor([5, 900, 17, 3, 4000, 2, 1, 0]), 1e6),
     {"pos": [5, 900, 17, 3, 4000, 2, 1, 0]})
rows, cols = [0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2]
def rope2d(x):
    h = x.shape[-1] // 2
    return torch.cat([rope(x[..., :h], torch.tensor(rows), 100.0), rope(x[..., h:], torch.tensor(cols), 100.0)], -1)
case("rope2d", {"x": rnd(6, 1, 8)}, rope2d, {"rows": rows, "cols": cols})

# ---- MAE 2-D sin-cos table --------------------------------------------------
def sincos1d(dim, pos):
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)
def sincos2d(dim, gh, gw):
    grid = np.meshgrid(np.arange(gw, dtype=np.float32), np.arange(gh, dtype=np.float32))
    grid = np.stack(grid, 0).reshape(2, 1, gh, gw)
    return np.concatenate([sincos1d(dim // 2, grid[0]), sincos1d(dim // 2, grid[1])], axis=1)
put("sincos2d.out", sincos2d(16, 3, 5))

# ---- attention ----------------------------------------------------------------
def attention(q, k, v, allowed):
    """q [B,S,H,D]; allowed [B,Sq,Sk] bool."""
    d = q.shape[-1]
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) / d ** 0.5
    s = s.masked_fill(~allowed[:, None], float("-inf"))
    p = torch.softmax(s, -1)
    p = torch.nan_to_num(p, nan=0.0)
    return torch.einsum("bhqk,bkhd->bqhd", p, v)
S = 12
ar = torch.arange(S)
causal = (ar[None, :] <= ar[:, None])[None].expand(2, S, S)
prefix = (causal | (ar[None, None, :] < 4))
seg = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
spos = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3])
packed = ((seg[None, :] == seg[:, None]) & (spos[None, :] <= spos[:, None]))[None].expand(2, S, S)
lens = torch.tensor([12, 7])
padding = (ar[None, None, :] < lens[:, None, None]).expand(2, S, S)
for name, allowed in [("attn_full", torch.ones(2, S, S, dtype=torch.bool)), ("attn_causal", causal),
                      ("attn_prefix", prefix), ("attn_packed", packed), ("attn_padding", padding)]:
    case(name, {"q": rnd(2, S, 3, 8), "k": rnd(2, S, 3, 8), "v": rnd(2, S, 3, 8)},
         lambda q, k, v, a=allowed: attention(q, k, v, a))
put("attn_packed.seg", seg)
put("attn_packed.pos", spos)
put("attn_padding.lens", lens)

# ---- convolution, patch embed, bicubic --------------------------------------------
case("conv2d", {"x": rnd(2, 3, 7, 6), "w": rnd(4, 3, 3, 3), "b": rnd(4)},
     lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1))
case("patch_embed", {"x": rnd(2, 3, 8, 12), "w": rnd(6, 3, 4, 4), "b": rnd(6)},
     lambda x, w, b: F.conv2d(x, w, b, stride=4).flatten(2).transpose(1, 2).contiguous())
case("bicubic", {"x": rnd(1, 3, 4, 5)}, lambda x: F.interpolate(x, size=(7, 3), mode="bicubic", align_corners=False))
case("bicubic_pos16to32", {"x": rnd(1, 8, 16, 16, scale=0.02)},
     lambda x: F.interpolate(x, size=(32, 32), mode="bicubic", align_corners=False))

# ---- vector quantisation ---------------------------------------------------------
z, cb = rnd(6, 4), rnd(5, 4)
zd, cbd = z.double().requires_grad_(), cb.double().requires_grad_()
idx = torch.cdist(zd.detach(), cbd.detach()).argmin(1)
e = cbd[idx]
zq = zd + (e - zd).detach()
loss = F.mse_loss(zd.detach(), e) + 0.25 * F.mse_loss(zd, e.detach())
dz = rnd(6, 4)
((zq * dz.double()).sum() + loss).backward()
for k, v in {"z": z, "codebook": cb, "out": zq.float(), "dout": dz, "loss": loss.float(),
             "dz": zd.grad.float(), "dcodebook": cbd.grad.float()}.items():
    put(f"vq.{k}", v)
put("vq.indices", idx.numpy())

# ---- optimizer and clipping ----------------------------------------------------------
p1, p2 = rnd(4, 3), rnd(3)
put("adamw.p1", p1)
put("adamw.p2", p2)
tp1, tp2 = p1.double().clone().requires_grad_(), p2.double().clone().requires_grad_()
opt = torch.optim.AdamW([{"params": [tp1], "weight_decay": 0.1}, {"params": [tp2], "weight_decay": 0.0}], lr=1e-2)
for step in range(3):
    g1, g2 = rnd(4, 3), rnd(3)
    put(f"adamw.g1_{step}", g1)
    put(f"adamw.g2_{step}", g2)
    tp1.grad, tp2.grad = g1.double(), g2.double()
    opt.step()
put("adamw.p1_final", tp1.float())
put("adamw.p2_final", tp2.float())

g1, g2 = rnd(5, 4), rnd(7)
put("clip.g1", g1)
put("clip.g2", g2)
c1, c2 = torch.nn.Parameter(torch.zeros(5, 4)), torch.nn.Parameter(torch.zeros(7))
c1.grad, c2.grad = g1.clone(), g2.clone()
norm = torch.nn.utils.clip_grad_norm_([c1, c2], 2.0)
put("clip.norm", norm)
put("clip.g1_clipped", c1.grad)
put("clip.g2_clipped", c2.grad)

# ---- bf16 ----------------------------------------------------------------------------
vals = torch.cat([rnd(200, scale=10), torch.tensor([1.0, -2.0, 3.0e38, 1e-40, 0.0, -0.0]),
                  torch.tensor([0x3F808000, 0x3F818000, 0x3F808001], dtype=torch.int32).view(torch.float32)])
put("bf16.in", vals)
put("bf16.out", vals.to(torch.bfloat16))

# ---- one pre-norm transformer block -------------------------------------------------------
Bt, St, Dm, Hh = 2, 8, 32, 4
blk = {
    "x": rnd(Bt, St, Dm),
    "ln1_w": 1 + rnd(Dm, scale=0.1), "ln1_b": rnd(Dm, scale=0.1),
    "qkv_w": rnd(3 * Dm, Dm, scale=0.2), "qkv_b": rnd(3 * Dm, scale=0.1),
    "proj_w": rnd(Dm, Dm, scale=0.2), "proj_b": rnd(Dm, scale=0.1),
    "ln2_w": 1 + rnd(Dm, scale=0.1), "ln2_b": rnd(Dm, scale=0.1),
    "fc_w": rnd(4 * Dm, Dm, scale=0.2), "fc_b": rnd(4 * Dm, scale=0.1),
    "fc2_w": rnd(Dm, 4 * Dm, scale=0.1), "fc2_b": rnd(Dm, scale=0.1),
}
def block(x, ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fc2_w, fc2_b):
    h = F.layer_norm(x, (Dm,), ln1_w, ln1_b, 1e-5)
    q, k, v = F.linear(h, qkv_w, qkv_b).split(Dm, -1)
    shape = (Bt, St, Hh, Dm // Hh)
    allowed = (torch.arange(St)[None, :] <= torch.arange(St)[:, None])[None].expand(Bt, St, St)
    a = attention(q.reshape(shape), k.reshape(shape), v.reshape(shape), allowed).reshape(Bt, St, Dm)
    x = x + F.linear(a, proj_w, proj_b)
    h = F.layer_norm(x, (Dm,), ln2_w, ln2_b, 1e-5)
    return x + F.linear(F.gelu(F.linear(h, fc_w, fc_b), approximate="tanh"), fc2_w, fc2_b)
case("block", blk, block)

# ---- gather (appended last so that earlier cases keep their random draws) -------
gidx = torch.tensor([[[2, 0, 1, 1], [0, 0, 2, 2]], [[1, 2, 0, 1], [0, 0, 0, 2]]])
case("gather", {"x": rnd(2, 3, 4)}, lambda x: torch.gather(x, 1, gidx), {"idx": gidx.flatten().numpy()})

# ---- the remaining elementwise and movement ops (appended, same reason) ----------
case("sub_bcast", {"a": rnd(2, 3, 4), "b": rnd(4)}, lambda a, b: a - b)
case("div_bcast", {"a": rnd(2, 3, 4), "b": 1.5 + rnd(3, 1).abs()}, lambda a, b: a / b)
case("scale", {"x": rnd(3, 4)}, lambda x: 0.37 * x)
case("add_scalar", {"x": rnd(3, 4)}, lambda x: x + 1.25)
case("relu", {"x": rnd(4, 5, scale=2)}, lambda x: F.relu(x))
case("tanh", {"x": rnd(4, 5, scale=2)}, lambda x: torch.tanh(x))
case("sigmoid", {"x": rnd(4, 5, scale=3)}, lambda x: torch.sigmoid(x))
case("exp", {"x": rnd(4, 5)}, lambda x: torch.exp(x))
case("square", {"x": rnd(4, 5)}, lambda x: x * x)
case("mean_axis0", {"x": rnd(3, 4, 2)}, lambda x: x.mean(0))
case("transpose", {"x": rnd(2, 3, 4)}, lambda x: x.transpose(0, 2).contiguous())
case("split", {"x": rnd(2, 7, 3)}, lambda x: torch.cat(list(reversed(x.split([2, 4, 1], 1))), 1))
sel = [2, 0, 2, 1]
case("index_select", {"x": rnd(2, 3, 4)}, lambda x: x.index_select(1, torch.tensor(sel)), {"idx": sel})


def write(path):
    header, off, blobs = {}, 0, []
    for name in sorted(T):
        dt, a = T[name]
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt", "generator": "kernels/testdata/golden/gen.py", "torch": torch.__version__}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.safetensors")
write(out)
print(f"wrote {out}: {len(T)} tensors, {os.path.getsize(out)} bytes")
