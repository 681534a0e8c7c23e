# Writes torch_written.safetensors with PyTorch tensors, laying out the
# safetensors format by hand (struct + json): torch 1.13 on the build machine
# has no safetensors package. Run: /usr/bin/python3 make_golden.py
import json, struct, torch

tensors = [
    ("layer.weight", torch.arange(6, dtype=torch.float32).reshape(2, 3) / 2, "F32"),
    ("layer.bias", torch.tensor([0.1, -3.14]).bfloat16(), "BF16"),
    ("half", torch.tensor([1 / 3, -65504.0, 0.0], dtype=torch.float16), "F16"),
    ("double", torch.tensor([1.25], dtype=torch.float64), "F64"),
    ("ids", torch.tensor([7, 8, 9], dtype=torch.int64), "I64"),
]
header, blobs, off = {"__metadata__": {"format": "pt", "writer": "torch 1.13"}}, [], 0
for name, t, dt in tensors:
    # untyped storage bytes: little-endian on x86, row-major for contiguous t
    b = bytes(t.contiguous().view(torch.uint8).numpy()) if t.dtype != torch.bfloat16 else bytes(t.view(torch.int16).numpy().tobytes())
    header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open("torch_written.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
