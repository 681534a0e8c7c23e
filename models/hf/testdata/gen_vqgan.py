#!/usr/bin/python3
"""Reference data for models/hf's LWM VQGAN import (vqgan_test.go).

Run from models/hf/testdata with /usr/bin/python3 (numpy + torch; no JAX or
Flax here):

    /usr/bin/python3 gen_vqgan.py

It writes
  vqgan_lwm_tiny.pkl  a tiny random VQGAN with LWM's structure, pickled
                      (protocol 4, numpy arrays) exactly as LWM's
                      --vqgan_checkpoint: the Flax params tree that
                      lwm/vqgan.py VQGAN.__init__ reads with pickle.load and
                      applies as {'params': tree};
  vqgan_lwm_tiny.json the config, an input image, the encoder latents (after
                      quant_conv), the code indices and the decoded image
                      (all NHWC, as LWM computes them), plus the key paths
                      and shapes of the full-size default VQGANConfig;
  vqgan_misc_p2.pkl, vqgan_misc_p5.pkl, vqgan_misc_shim.pkl and
  vqgan_misc.json     the pickle reader's other paths (see misc()).

The model below is a PyTorch port of LargeWorldModel/LWM lwm/vqgan.py at
45808dbe (same module code at aa8b9b8b), followed module by module:
VQGANModel.encode/decode, Encoder, Decoder, VectorQuantizer,
DownsamplingBlock, ResnetBlock, Downsample, Upsample, UpsamplingBlock,
MidBlock. Parameters are created the way flax.linen names them: setup()
attributes at the top (encoder, decoder, quantize, quant_conv,
post_quant_conv), and inside @nn.compact modules ClassName_k with k counting
that class's instances in call order (so Dropout_0 takes no parameters but
Conv_2 is still the shortcut). nn.Conv: kernel [kh, kw, in, out], bias, SAME
padding at stride 1 (pad k//2 both sides for odd k), cross-correlation.
nn.GroupNorm(): contiguous channel groups, epsilon 1e-6, scale and bias (LWM
uses 32 groups; the tiny model uses GROUPS so its widths can be small).
Everything is computed in float64 from float32 parameters: the reference is
the exact function, and Loom's float32 error is measured against it.
"""
import collections
import json
import pickle
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

# The tiny model: three levels (two downsamplings, f = 4), widths 8/16/16,
# LWM's 2 res blocks per level, z_channels != quantized_embed_dim so that
# quant_conv and post_quant_conv are told apart.
TINY = dict(resolution=32, num_channels=3, hidden_channels=8, channel_mult=(1, 2, 2), num_res_blocks=2,
            z_channels=6, num_embeddings=32, quantized_embed_dim=4, groups=4)
# lwm/vqgan.py VQGANConfig defaults (groups: nn.GroupNorm's 32).
LWM = dict(resolution=256, num_channels=3, hidden_channels=128, channel_mult=(1, 2, 2, 4, 6), num_res_blocks=2,
           z_channels=64, num_embeddings=8192, quantized_embed_dim=64, groups=32)


class Scope:
    """A Flax module scope: params are created on first use (init) with
    auto-names ClassName_k, or only their shapes are recorded (shapes)."""

    def __init__(self, tree, rng, path, shapes):
        self.tree, self.rng, self.path, self.shapes = tree, rng, path, shapes
        self.count = collections.Counter()

    def child(self, cls, name=None):
        if name is None:
            name = f"{cls}_{self.count[cls]}"
            self.count[cls] += 1
        sub = self.tree.setdefault(name, {})
        return Scope(sub, self.rng, self.path + [name], self.shapes)

    def param(self, name, shape, init):
        if name not in self.tree:
            if self.shapes is not None:
                self.shapes["/".join(self.path + [name])] = list(shape)
                self.tree[name] = None
            else:
                self.tree[name] = init(self.rng, shape).astype(np.float32)
        v = self.tree[name]
        return None if v is None else torch.from_numpy(v.astype(np.float64))


class Sym:
    """Shape-only activations (NHWC) for listing the full-size params."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def __add__(self, other):
        return self


def conv_init(rng, shape):
    kh, kw, cin, cout = shape
    return rng.standard_normal(shape) / np.sqrt(kh * kw * cin)


def bias_init(rng, shape):
    return 0.1 * rng.standard_normal(shape)


def nn_conv(scope, x, features, k, stride=1, padding="SAME", gain=1.0):
    """flax.linen.Conv(features, [k, k], strides, padding) on NHWC x."""
    s = scope.child("Conv")
    cin = x.shape[-1]
    w = s.param("kernel", (k, k, cin, features), lambda r, sh: gain * conv_init(r, sh))
    b = s.param("bias", (features,), bias_init)
    if isinstance(x, Sym):
        n, h, wd, _ = x.shape
        if padding == "VALID":
            h, wd = (h - k) // stride + 1, (wd - k) // stride + 1
        return Sym((n, h, wd, features))
    pad = k // 2 if padding == "SAME" else 0
    y = F.conv2d(x.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1), b, stride=stride, padding=pad)
    return y.permute(0, 2, 3, 1)


def nn_group_norm(scope, x, groups):
    """flax.linen.GroupNorm(): num_groups groups, epsilon 1e-6."""
    s = scope.child("GroupNorm")
    c = x.shape[-1]
    g = s.param("scale", (c,), lambda r, sh: 1 + 0.1 * r.standard_normal(sh))
    b = s.param("bias", (c,), bias_init)
    if isinstance(x, Sym):
        return x
    y = F.group_norm(x.permute(0, 3, 1, 2), groups, g, b, eps=1e-6)
    return y.permute(0, 2, 3, 1)


def silu(x):
    return x if isinstance(x, Sym) else F.silu(x)


def resnet_block(scope, x, cfg, out_channels=None):
    """ResnetBlock: GN, silu, conv, GN, silu, (Dropout_0: no params), conv,
    1×1 shortcut (use_conv_shortcut False) when the width changes."""
    s = scope.child("ResnetBlock")
    out_channels = out_channels or x.shape[-1]
    residual = x
    h = nn_conv(s, silu(nn_group_norm(s, x, cfg["groups"])), out_channels, 3)
    h = silu(nn_group_norm(s, h, cfg["groups"]))
    s.count["Dropout"] += 1  # nn.Dropout(deterministic=True): identity
    h = nn_conv(s, h, out_channels, 3)
    if out_channels != residual.shape[-1]:
        residual = nn_conv(s, residual, out_channels, 1)
    return h + residual


def downsample(scope, x):
    """Downsample(with_conv=True): jnp.pad bottom/right by 1, VALID 3×3
    stride-2 conv."""
    s = scope.child("Downsample")
    if isinstance(x, Sym):
        n, h, w, c = x.shape
        x = Sym((n, h + 1, w + 1, c))
    else:
        x = F.pad(x, (0, 0, 0, 1, 0, 1))
    return nn_conv(s, x, x.shape[-1], 3, stride=2, padding="VALID")


def upsample(scope, x):
    """Upsample(with_conv=True): jax.image.resize(..., 'nearest') to 2×
    (source pixel floor((i + 0.5)/2) = i // 2), then a 3×3 conv."""
    s = scope.child("Upsample")
    if isinstance(x, Sym):
        n, h, w, c = x.shape
        x = Sym((n, 2 * h, 2 * w, c))
    else:
        x = x.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    return nn_conv(s, x, x.shape[-1], 3)


def mid_block(scope, x, cfg):
    s = scope.child("MidBlock")
    return resnet_block(s, resnet_block(s, x, cfg), cfg)  # no_attn_mid_block


def encoder(scope, x, cfg):
    nres = len(cfg["channel_mult"])
    x = nn_conv(scope, x, cfg["hidden_channels"], 3)
    for i in range(nres):
        s = scope.child("DownsamplingBlock")
        out = cfg["hidden_channels"] * cfg["channel_mult"][i]
        for _ in range(cfg["num_res_blocks"]):
            x = resnet_block(s, x, cfg, out)  # attn_resolutions = ()
        if i != nres - 1:
            x = downsample(s, x)
    x = mid_block(scope, x, cfg)
    x = silu(nn_group_norm(scope, x, cfg["groups"]))
    return nn_conv(scope, x, cfg["z_channels"], 3)


def decoder(scope, x, cfg, out_gain=1.0):
    nres = len(cfg["channel_mult"])
    x = nn_conv(scope, x, cfg["hidden_channels"] * cfg["channel_mult"][nres - 1], 3)
    x = mid_block(scope, x, cfg)
    for i in reversed(range(nres)):
        s = scope.child("UpsamplingBlock")
        out = cfg["hidden_channels"] * cfg["channel_mult"][i]
        for _ in range(cfg["num_res_blocks"] + 1):
            x = resnet_block(s, x, cfg, out)
        if i != 0:
            x = upsample(s, x)
    x = silu(nn_group_norm(scope, x, cfg["groups"]))
    return nn_conv(scope, x, cfg["num_channels"], 3, gain=out_gain)


def quantize(scope, z, cfg, codebook=None):
    """VectorQuantizer: d = Σz² + Σe² − 2 z·e, argmin (first minimum)."""
    e = scope.param("embeddings", (cfg["num_embeddings"], cfg["quantized_embed_dim"]),
                    lambda r, sh: codebook)
    zf = z.reshape(-1, z.shape[-1])
    d = (zf ** 2).sum(1, keepdim=True) + (e.T ** 2).sum(0, keepdim=True) - 2 * torch.einsum("bd,nd->bn", zf, e)
    idx = torch.argmin(d, dim=1)
    top2 = torch.topk(d, 2, dim=1, largest=False).values
    gap = (top2[:, 1] - top2[:, 0]).min().item()
    return e[idx].reshape(z.shape), idx.reshape(z.shape[:-1]), gap


def model_scopes(tree, rng, shapes=None):
    return {k: Scope(tree.setdefault(k, {}), rng, [k], shapes)
            for k in ("encoder", "decoder", "quantize", "quant_conv", "post_quant_conv")}


def top_conv(scope, x, features):
    """quant_conv / post_quant_conv: nn.Conv(features, [1, 1]) bound as a
    setup() attribute, so its params sit directly under its name."""
    cin = x.shape[-1]
    w = scope.param("kernel", (1, 1, cin, features), conv_init)
    b = scope.param("bias", (features,), bias_init)
    if isinstance(x, Sym):
        return Sym(x.shape[:-1] + (features,))
    return (F.conv2d(x.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1), b)).permute(0, 2, 3, 1)


def full_size_shapes():
    shapes = {}
    sc = model_scopes({}, None, shapes)
    cfg = LWM
    h = encoder(sc["encoder"], Sym((1, 16, 16, 3)), cfg)
    h = top_conv(sc["quant_conv"], h, cfg["quantized_embed_dim"])
    sc["quantize"].param("embeddings", (cfg["num_embeddings"], cfg["quantized_embed_dim"]), None)
    h = top_conv(sc["post_quant_conv"], h, cfg["z_channels"])
    decoder(sc["decoder"], h, cfg)
    return shapes


def tiny():
    cfg = TINY
    rng = np.random.default_rng(20240214)
    pix = rng.integers(0, 256, size=(2, cfg["resolution"], cfg["resolution"], 3))
    x32 = pix.astype(np.float32) / np.float32(127.5) - np.float32(1)  # vision_chat.py _process_frame
    x = torch.from_numpy(x32.astype(np.float64))

    tree = {}
    sc = model_scopes(tree, rng)
    with torch.no_grad():
        h = encoder(sc["encoder"], x, cfg)
        z = top_conv(sc["quant_conv"], h, cfg["quantized_embed_dim"])  # VQGANModel.encode
        # A codebook drawn at the latents' scale, re-drawn until every
        # position's nearest code wins by a clear margin: codes then do not
        # depend on float rounding (which JAX's, PyTorch's and Loom's
        # summation orders would each do differently).
        zs = z.reshape(-1, z.shape[-1])
        for attempt in range(1000):
            cb = (zs.mean(0) + zs.std(0) * torch.from_numpy(rng.standard_normal(
                (cfg["num_embeddings"], cfg["quantized_embed_dim"])))).numpy().astype(np.float32)
            sc["quantize"].tree.pop("embeddings", None)
            zq, codes, gap = quantize(sc["quantize"], z, cfg, cb)
            if gap > 1e-3 and len(set(codes.reshape(-1).tolist())) >= cfg["num_embeddings"] // 2:
                break
        else:
            sys.exit("no codebook with a clear margin")
        # VQGANModel.decode(codes): quantize(None, codes) is the table
        # lookup, then post_quant_conv, the decoder and the clip.
        emb = torch.from_numpy(tree["quantize"]["embeddings"].astype(np.float64))
        hq = top_conv(sc["post_quant_conv"], emb[codes], cfg["z_channels"])
        # The last conv's gain keeps most pixels inside [-1, 1] so that the
        # clip hides little of the comparison.
        raw = decoder(sc["decoder"], hq, cfg, out_gain=0.35)
        dec = torch.clamp(raw, -1, 1)
    clipped = (raw.abs() > 1).double().mean().item()
    print(f"min code margin {gap:.4g}, codes used {len(set(codes.reshape(-1).tolist()))}, "
          f"pixels clipped {100 * clipped:.1f}%, |latent| max {z.abs().max().item():.3g}")
    with open("vqgan_lwm_tiny.pkl", "wb") as f:
        pickle.dump(tree, f, protocol=4)
    full = full_size_shapes()
    out = {
        "source": "gen_vqgan.py: PyTorch port of LargeWorldModel/LWM lwm/vqgan.py @45808dbe",
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        "input_nhwc": {"shape": list(x32.shape), "data": x32.reshape(-1).tolist()},
        "latents_nhwc": {"shape": list(z.shape), "data": z.reshape(-1).tolist()},
        "codes": {"shape": list(codes.shape), "data": codes.reshape(-1).tolist()},
        "decoded_nhwc": {"shape": list(dec.shape), "data": dec.reshape(-1).tolist()},
        "min_code_margin": gap,
        "clipped_fraction": clipped,
        "lwm_full_shapes": full,
        "lwm_full_params": int(sum(np.prod(s) for s in full.values())),
    }
    with open("vqgan_lwm_tiny.json", "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


def fake_module(name, **attrs):
    m = types.ModuleType(name)
    for k, v in attrs.items():
        if callable(v):
            v.__module__ = name
            v.__qualname__ = k
        setattr(m, k, v)
    sys.modules[name] = m
    return m


def misc():
    """The reader's other paths, each as Python's own pickler writes it:
    protocol 2 (GLOBAL opcodes, bytes as _codecs.encode, no frames) and 5
    (numpy's in-band _frombuffer with BYTEARRAY8); float64, float16,
    big-endian, Fortran-order, integer, bool and 0-d arrays; lists, tuples,
    OrderedDict and scalars. vqgan_misc_shim.pkl spells the globals of
    packages not installed here, by stand-ins that pickle the same way as
    the real ones: flax.core.frozen_dict.FrozenDict (its __reduce__ is
    (FrozenDict, (self.unfreeze(),))), jax._src.array._reconstruct_array
    (jax.Array's __reduce__: (_reconstruct_array, (fun, args, arr_state,
    aval_state)) from the numpy value's own __reduce__), and numpy ≥ 2's
    numpy._core.multiarray._reconstruct."""
    rng = np.random.default_rng(7)
    arrays = {
        "f4": rng.standard_normal((2, 3)).astype(np.float32),
        "f8": rng.standard_normal((3,)),
        "f2": rng.standard_normal((2, 2)).astype(np.float16),
        "be": rng.standard_normal((4,)).astype(">f4"),
        "fortran": np.asfortranarray(rng.standard_normal((2, 3, 2)).astype(np.float32)),
        "i4": rng.integers(-1000, 1000, size=(5,)).astype(np.int32),
        "u1": rng.integers(0, 256, size=(3,)).astype(np.uint8),
        "b1": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }
    tree = {"params": {"arrays": dict(arrays)},
            "meta": collections.OrderedDict([("name", "vqgan"), ("step", 12345), ("big", -2 ** 40),
                                             ("lr", 0.125), ("flag", True), ("none", None),
                                             ("list", [1, 2, [3]]), ("tuple", (1, "a")), ("raw", b"\x00\xff")])}
    for proto in (2, 5):
        with open(f"vqgan_misc_p{proto}.pkl", "wb") as f:
            pickle.dump(tree, f, protocol=proto)

    def _reconstruct_array(fun, args, arr_state, aval_state):
        raise RuntimeError("stand-in: never called here")

    def _reconstruct(*a):
        raise RuntimeError("stand-in: never called here")

    class FrozenDict(dict):
        def __reduce__(self):
            return FrozenDict, (dict(self),)

    class JaxArray:
        def __init__(self, a):
            self.a = a

        def __reduce__(self):
            fun, args, state = self.a.__reduce__()
            return _reconstruct_array, (fun, args, state, {"weak_type": False})

    class NumPy2Array:
        def __init__(self, a):
            self.a = a

        def __reduce__(self):
            _, args, state = self.a.__reduce__()
            return _reconstruct, args, state

    fake_module("flax")
    fake_module("flax.core")
    fake_module("flax.core.frozen_dict", FrozenDict=FrozenDict)
    fake_module("jax")
    fake_module("jax._src")
    fake_module("jax._src.array", _reconstruct_array=_reconstruct_array)
    fake_module("numpy._core")
    fake_module("numpy._core.multiarray", _reconstruct=_reconstruct)
    shim = FrozenDict({"params": {"jax": JaxArray(arrays["f4"]), "np2": NumPy2Array(arrays["fortran"]),
                                  "nested": {"f8": JaxArray(arrays["f8"])}}})
    with open("vqgan_misc_shim.pkl", "wb") as f:
        pickle.dump(shim, f, protocol=4)

    def enc(a):
        return {"dtype": a.dtype.str, "shape": list(a.shape),
                "data": np.ascontiguousarray(a).astype(np.float64).reshape(-1).tolist()}

    with open("vqgan_misc.json", "w") as f:
        json.dump({"arrays": {k: enc(v) for k, v in arrays.items()}}, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    tiny()
    misc()
