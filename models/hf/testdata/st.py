"""Minimal safetensors reader/writer for the reference scripts (the
safetensors Python package is not installable here). Follows the format
README: u64 little-endian header length, JSON header space-padded to 8
bytes, C-order little-endian data."""
import json
import struct

import numpy as np
import torch

_DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
       torch.int64: "I64", torch.int32: "I32"}
_NP = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def save(path, tensors, metadata=None):
    """tensors: dict name -> torch tensor (written in sorted-name order)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        if t.dtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().tobytes()
        else:
            raw = t.numpy().tobytes()
        header[name] = {"dtype": _DT[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = dict(metadata or {"format": "pt"})
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load(path):
    """Returns dict name -> float32/int torch tensor."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b = data[e["data_offsets"][0]:e["data_offsets"][1]]
        if e["dtype"] == "BF16":
            t = torch.frombuffer(bytearray(b), dtype=torch.int16).view(torch.bfloat16).float()
        else:
            t = torch.from_numpy(np.frombuffer(b, dtype=_NP[e["dtype"]]).copy())
        out[name] = t.reshape(e["shape"])
    return out


def save_sharded(dirpath, tensors, shard_bytes, metadata=None):
    """Writes model-0000i-of-0000N.safetensors shards and the index, as
    transformers' save_pretrained does."""
    import os
    names = sorted(tensors)
    shards, cur, size = [], [], 0
    for n in names:
        b = tensors[n].numel() * tensors[n].element_size()
        if cur and size + b > shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(n)
        size += b
    if cur:
        shards.append(cur)
    wm, total = {}, 0
    for i, sh in enumerate(shards):
        fn = "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
        save(os.path.join(dirpath, fn), {n: tensors[n] for n in sh}, metadata)
        for n in sh:
            wm[n] = fn
            total += tensors[n].numel() * tensors[n].element_size()
    with open(os.path.join(dirpath, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2, sort_keys=True)
