"""The PyTorch side of `loom bench step`: the same pre-norm transformer as
kbench/step.go. After building the model it prints one JSON line (params,
torch version, threads, and the BLAS and OpenMP libraries it loaded, from
loom_blas(), which the Go side prepends: kbench.BLASProbe), then for every line "step" read from stdin it runs
one AdamW training step and prints its time in seconds, so that the Go side
can alternate Loom and PyTorch step by step. It exits at end of input.

argv[1] is a JSON object: layers, dim, heads, seq, batch, vocab, threads.
"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
torch.manual_seed(0)
L, D, H, S, B, V = cfg["layers"], cfg["dim"], cfg["heads"], cfg["seq"], cfg["batch"], cfg["vocab"]


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.fc, self.fc2 = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)
        self.register_buffer("mask", torch.tril(torch.ones(S, S, dtype=torch.bool)))

    def forward(self, x):
        h = self.ln1(x)
        q, k, v = self.qkv(h).split(D, -1)
        q, k, v = (t.view(B, S, H, D // H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(D // H)
        att = att.masked_fill(~self.mask, float("-inf")).softmax(-1)
        a = (att @ v).transpose(1, 2).reshape(B, S, D)
        x = x + self.proj(a)
        return x + self.fc2(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, D), nn.Embedding(S, D)
        self.blocks = nn.ModuleList(Block() for _ in range(L))
        self.lnf, self.head = nn.LayerNorm(D), nn.Linear(D, V, bias=False)

    def forward(self, ids, targets):
        x = self.wte(ids) + self.wpe(torch.arange(S))
        for b in self.blocks:
            x = b(x)
        return F.cross_entropy(self.head(self.lnf(x)).view(-1, V), targets.view(-1))


model = GPT()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
ids = torch.randint(0, V, (B, S))
tgt = torch.randint(0, V, (B, S))
params = sum(p.numel() for p in model.parameters())
torch.ones(64, 64) @ torch.ones(64, 64)  # loads the BLAS, for loom_blas
print(json.dumps({"params": params, "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "blas": loom_blas()}), flush=True)  # noqa: F821 (prepended)
for line in sys.stdin:
    if line.strip() != "step":
        break
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=False)
    loss = model(ids, tgt)
    loss.backward()
    opt.step()
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "loss": loss.item()}), flush=True)
