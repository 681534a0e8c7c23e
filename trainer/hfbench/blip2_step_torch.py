"""The PyTorch side of `loom bench blip2-step`: one BLIP-2 stage-1 training
step (frozen ViT, ln_vision, Q-Former with ITC + ITM + ITG, equal weights)
on the parameters Loom saved (its own safetensors names), in float32.

The equations are LAVIS blip2_qformer.py / Qformer.py (506965b) as Loom's
models/blip2.go follows them, written out the way models/qformer and
models/vit's torch_ref.py tests transcribe them: BERT embeddings over
[queries; text], cross-attention to the image on layers l % cross_freq == 0
for the query rows, query and text FFNs, additive (1 - mask) * -10000
masks (padding; UniLM for ITG), exact GELU, BERT LM head tied to the word
embeddings. The ViT (class token, pre-norm, exact GELU, last layer, all
tokens) runs without autograd. ITC: max over queries of the normalised
dot products over the clamped temperature, cross-entropy with label
smoothing, or LAVIS's soft targets when rows share a caption or image key; ITM: [pos; (text,
neg image); (neg text, image)], mean over queries of itm_head; ITG: [DEC]
for [CLS], next-token loss with label smoothing.

Rows with the same caption or image key (batch.json image_keys) are each
other's positives (LAVIS's image ids). The first forward uses the hard
negatives Loom drew (batch.json neg_img, neg_txt); timed steps draw their
own as LAVIS does (multinomial over softmax(sim) with the positives
masked).

argv[1]: the directory (params.safetensors, batch.json). argv[2]: JSON
{threads, lr, beta1, beta2, weight_decay, heads, vit_heads, cross_freq,
queries, label_smoothing, pad, dec}. loom_blas() is prepended by the Go
side (kbench.BLASProbe).

Protocol: one JSON line after the first forward (params, trainable,
losses {itc, itm, itg, loss} before any update, torch version, threads,
blas), then for every "step" line on stdin one AdamW step and {"seconds",
"loss"}.
"""
import json
import struct
import sys
import time

import torch
import torch.nn.functional as F

out_dir, arg = sys.argv[1], json.loads(sys.argv[2])
torch.set_num_threads(arg["threads"])

raw = open(out_dir + "/params.safetensors", "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
hdr = json.loads(raw[8:8 + n])
hdr.pop("__metadata__", None)
data = bytearray(raw[8 + n:])
W = {k: torch.frombuffer(data[e["data_offsets"][0]:e["data_offsets"][1]], dtype=torch.float32).reshape(e["shape"]).clone()
     for k, e in hdr.items()}
batch = json.load(open(out_dir + "/batch.json"))
px = torch.tensor(batch["pixel_values"], dtype=torch.float32).reshape(batch["shape"])
rows = batch["tokens"]
keys = batch["image_keys"]
NB = len(rows)
NH, VH, CF, NQ = arg["heads"], arg["vit_heads"], arg["cross_freq"], arg["queries"]
LS, PAD, DEC = arg["label_smoothing"], arg["pad"], arg["dec"]
Q, V = "qformer.", "vit."

trainable = [k for k in W if k.startswith(Q) or k.startswith("ln_vision.")]
for k in trainable:
    W[k].requires_grad_(True)
decay = [W[k] for k in trainable if W[k].dim() >= 2]
no_decay = [W[k] for k in trainable if W[k].dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": arg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=arg["lr"], betas=(arg["beta1"], arg["beta2"]), eps=1e-8)


def lin(x, n):
    return F.linear(x, W[n + ".weight"], W.get(n + ".bias"))


def ln(x, n, eps):
    return F.layer_norm(x, x.shape[-1:], W[n + ".weight"], W[n + ".bias"], eps)


def mha(xq, xkv, names, heads, bias):
    b, h = xq.shape[0], xq.shape[-1]
    d = h // heads
    q, k, v = (lin(x, nm).view(b, -1, heads, d).transpose(1, 2) for x, nm in ((xq, names[0]), (xkv, names[1]), (xkv, names[2])))
    s = q @ k.transpose(-1, -2) / d ** 0.5
    if bias is not None:
        s = s + bias
    return lin((s.softmax(-1) @ v).transpose(1, 2).reshape(b, -1, h), names[3])


def vit(x):
    nl = 1 + max(int(k.split(".")[3]) for k in W if k.startswith(V + "encoder.layers."))
    ps = W[V + "embeddings.patch_embedding.weight"]
    e = F.conv2d(x, ps, W.get(V + "embeddings.patch_embedding.bias"), stride=ps.shape[-1]).flatten(2).transpose(1, 2)
    pos = W[V + "embeddings.position_embedding.weight"]
    cls = (W[V + "embeddings.class_embedding"] + pos[0]).expand(x.shape[0], 1, -1)
    h = torch.cat([cls, e + pos[1:]], 1)
    if V + "pre_layrnorm.weight" in W:
        h = ln(h, V + "pre_layrnorm", 1e-5)
    for l in range(nl):
        p = V + f"encoder.layers.{l}."
        h = h + mha(ln(h, p + "layer_norm1", 1e-5), ln(h, p + "layer_norm1", 1e-5),
                    [p + "self_attn." + s for s in ("q_proj", "k_proj", "v_proj", "out_proj")], VH, None)
        h = h + lin(F.gelu(lin(ln(h, p + "layer_norm2", 1e-5), p + "mlp.fc1")), p + "mlp.fc2")
    return h


def pad(rs):
    t = max(len(r) for r in rs)
    return torch.tensor([r + [PAD] * (t - len(r)) for r in rs]), torch.tensor([[1] * len(r) + [0] * (t - len(r)) for r in rs])


NL = 1 + max(int(k.split(".")[2]) for k in W if k.startswith(Q + "layer."))


def qformer(img, ids, mask, queries, unilm=False):
    """Hidden states [B, Nq+T, H] (Loom's qformer.Forward)."""
    parts = []
    b = img.shape[0] if img is not None else ids.shape[0]
    nq = NQ if queries else 0
    if queries:
        parts.append(W[Q + "query_tokens"].expand(b, -1, -1))
    t = 0
    if ids is not None:
        t = ids.shape[1]
        parts.append(W[Q + "embeddings.word_embeddings.weight"][ids] + W[Q + "embeddings.position_embeddings.weight"][:t])
    x = ln(torch.cat(parts, 1), Q + "embeddings.LayerNorm", 1e-12)
    s = nq + t
    full = torch.cat([torch.ones(b, nq, dtype=torch.long), mask], 1) if ids is not None else torch.ones(b, nq, dtype=torch.long)
    if unilm:  # get_extended_attention_mask(is_decoder=True, has_query=True)
        seq = torch.arange(t)
        cm = (seq[None, None, :].repeat(b, t, 1) <= seq[None, :, None]).long()
        cm = torch.cat([torch.zeros(b, nq, t, dtype=torch.long), cm], 1)
        cm = torch.cat([torch.ones(b, s, nq, dtype=torch.long), cm], -1)
        ext = cm[:, None, :, :] * full[:, None, None, :]
    else:
        ext = full[:, None, None, :]
    bias = (1.0 - ext.float()) * -10000.0
    for l in range(NL):
        p = Q + f"layer.{l}."
        a = mha(x, x, [p + "attention." + s for s in ("query", "key", "value", "output.dense")], NH, bias)
        x = ln(x + a, p + "attention.output.LayerNorm", 1e-12)
        xq, xt = x[:, :nq], x[:, nq:]
        if nq:
            if l % CF == 0 and img is not None:
                c = mha(xq, img, [p + "crossattention." + s for s in ("query", "key", "value", "output.dense")], NH, None)
                xq = ln(xq + c, p + "crossattention.output.LayerNorm", 1e-12)
            xq = ln(xq + lin(F.gelu(lin(xq, p + "intermediate_query.dense")), p + "output_query.dense"), p + "output_query.LayerNorm", 1e-12)
        if t:
            xt = ln(xt + lin(F.gelu(lin(xt, p + "intermediate.dense")), p + "output.dense"), p + "output.LayerNorm", 1e-12)
        x = torch.cat([xq, xt], 1)
    return x


def same(i):
    """Rows that are not row i's negatives: itself, those with its caption or its image key."""
    return [k for k in range(NB) if k == i or rows[k] == rows[i] or (keys and keys[i] and keys[k] == keys[i])]


ids, mask = pad(rows)
lens = mask.sum(1)
diag = torch.arange(NB)
dup = any(len(same(i)) > 1 for i in range(NB))
targets = torch.zeros(NB, NB)
for i in range(NB):
    targets[i] += LS / NB
    for k in same(i):
        targets[i, k] += (1 - LS) / len(same(i))
positive = torch.tensor([[k in same(i) for k in range(NB)] for i in range(NB)])
with torch.no_grad():
    image_embeds = vit(px)  # frozen


def loss_fn(neg_img=None, neg_txt=None):
    feats = ln(image_embeds, "ln_vision", 1e-5)
    with torch.no_grad():
        W[Q + "temp"].clamp_(0.001, 0.5)
    temp = W[Q + "temp"]
    # ITC
    q = qformer(feats, None, None, True)
    img = F.normalize(lin(q, Q + "vision_proj"), dim=-1)  # [B, Nq, E]
    txt = F.normalize(lin(qformer(None, ids, mask, False)[:, 0], Q + "text_proj"), dim=-1)  # [B, E]
    sim_i2t = torch.einsum("iqe,je->ijq", img, txt).max(-1)[0] / temp
    sim_t2i = sim_i2t.t()
    if dup:
        itc = (-(F.log_softmax(sim_i2t, 1) * targets).sum(1).mean() - (F.log_softmax(sim_t2i, 1) * targets).sum(1).mean()) / 2
    else:
        itc = (F.cross_entropy(sim_i2t, diag, label_smoothing=LS) + F.cross_entropy(sim_t2i, diag, label_smoothing=LS)) / 2
    # ITM
    if neg_img is None:
        with torch.no_grad():
            w_t2i = F.softmax(sim_t2i, 1).masked_fill(positive, 0) + 1e-4 * ~positive
            w_i2t = F.softmax(sim_i2t, 1).masked_fill(positive, 0) + 1e-4 * ~positive
            neg_img = torch.multinomial(w_t2i, 1).squeeze(1).tolist()
            neg_txt = torch.multinomial(w_i2t, 1).squeeze(1).tolist()
    itm_ids, itm_mask = pad(rows + rows + [rows[k] for k in neg_txt])
    out = qformer(torch.cat([feats, feats[neg_img], feats], 0), itm_ids, itm_mask, True)
    logits = lin(out[:, :NQ], Q + "itm_head").mean(1)
    labels = torch.cat([torch.ones(NB, dtype=torch.long), torch.zeros(2 * NB, dtype=torch.long)])
    itm = F.cross_entropy(logits, labels)
    # ITG
    dec = ids.clone()
    dec[:, 0] = DEC
    h = qformer(feats, dec, mask, True, unilm=True)[:, NQ:-1]
    h = ln(F.gelu(lin(h, Q + "cls.predictions.transform.dense")), Q + "cls.predictions.transform.LayerNorm", 1e-12)
    lm = F.linear(h, W[Q + "embeddings.word_embeddings.weight"], W[Q + "cls.predictions.bias"])
    tgt = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    itg = F.cross_entropy(lm.reshape(-1, lm.shape[-1]), tgt.reshape(-1), ignore_index=-100, label_smoothing=LS)
    return itc + itm + itg, {"itc": itc.item(), "itm": itm.item(), "itg": itg.item()}


with torch.no_grad():
    loss0, terms = loss_fn(batch["neg_img"], batch["neg_txt"])
terms["loss"] = loss0.item()
print(json.dumps({"params": sum(v.numel() for v in W.values()), "trainable": sum(W[k].numel() for k in trainable),
                  "losses": terms, "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "blas": loom_blas()}), flush=True)  # noqa: F821 (prepended)
for line in sys.stdin:
    if line.strip() != "step":
        break
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=False)
    loss, _ = loss_fn()
    loss.backward()
    opt.step()
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "loss": loss.item()}), flush=True)
