# Reads loom_written.safetensors (written by Loom's Go code) with PyTorch:
# parses the header with json + struct and builds tensors with
# torch.frombuffer, as safetensors.torch.load_file would. Exits non-zero on
# any mismatch. Run: /usr/bin/python3 check_golden.py
import json, struct, sys, torch

DT = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "I64": torch.int64}
raw = open("loom_written.safetensors", "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
assert n % 8 == 0, n
hdr = json.loads(raw[8 : 8 + n])
data = bytearray(raw[8 + n :])
meta = hdr.pop("__metadata__")
assert meta == {"format": "pt", "step": "7"}, meta
out = {}
for name, e in hdr.items():
    b, e_ = e["data_offsets"]
    t = torch.frombuffer(data[b:e_], dtype=DT[e["dtype"]]) if e_ > b else torch.empty(0, dtype=DT[e["dtype"]])
    out[name] = t.reshape(e["shape"])
want = {
    "proj.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
    "proj.bias": torch.tensor([1.5, -0.25]).bfloat16(),
    "scale": torch.tensor(0.07),
    "empty": torch.empty(0, 4),
}
for k, w in want.items():
    g = out[k]
    if g.dtype != w.dtype or g.shape != w.shape or not torch.equal(g, w):
        sys.exit(f"{k}: got {g} ({g.dtype}), want {w} ({w.dtype})")
print("ok: PyTorch read", sorted(out))
