# PyTorch reference for golden_test.go: LAVIS Qformer.py (506965b) written
# out in torch 1.13 for the tiny config: BertEmbeddings (word + position for
# text, cat(query_embeds, text), LayerNorm), BertLayer (self-attention over
# [queries; text]; cross-attention to the image on layers with
# layer_num % 2 == 0 for the query rows; intermediate_query/output_query for
# queries, intermediate/output for text), masks from
# get_extended_attention_mask ((1-mask)*-10000), BertLMPredictionHead.
# Run: /usr/bin/python3 torch_ref.py
import json, struct, torch
import torch.nn.functional as F

raw = open("tiny.safetensors", "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
hdr = json.loads(raw[8 : 8 + n]); hdr.pop("__metadata__")
data = bytearray(raw[8 + n :])
W = {k: torch.frombuffer(data[e["data_offsets"][0]:e["data_offsets"][1]], dtype=torch.float32).reshape(e["shape"]).double()
     for k, e in hdr.items()}
img = W.pop("image")
H, NH, L, NQ, EPS = 8, 2, 3, 3, 1e-12
P = "qformer."
text = torch.tensor([[1, 5, 9, 2], [1, 7, 0, 0]])
text_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
B, T = text.shape

def lin(x, n): return x @ W[P + n + ".weight"].T + W[P + n + ".bias"]
def ln(x, n): return F.layer_norm(x, (H,), W[P + n + ".weight"], W[P + n + ".bias"], EPS)
def gelu(x): return F.gelu(x)  # exact erf

def attn(xq, xkv, n, bias):
    q, k, v = (lin(x, n + s).view(B, -1, NH, H // NH).transpose(1, 2) for x, s in ((xq, ".query"), (xkv, ".key"), (xkv, ".value")))
    s = q @ k.transpose(-1, -2) / (H // NH) ** 0.5
    if bias is not None: s = s + bias
    return (s.softmax(-1) @ v).transpose(1, 2).reshape(B, -1, H)

def forward(causal):
    e = W[P + "embeddings.word_embeddings.weight"][text] + W[P + "embeddings.position_embeddings.weight"][:T]
    q = W[P + "query_tokens"].expand(B, -1, -1)
    x = ln(torch.cat([q, e], 1), "embeddings.LayerNorm")
    mask = torch.cat([torch.ones(B, NQ, dtype=torch.long), text_mask], 1)  # [B, NQ+T]
    S = NQ + T
    if causal:  # get_extended_attention_mask(is_decoder=True, has_query=True)
        seq = torch.arange(T)
        cm = (seq[None, None, :].repeat(B, T, 1) <= seq[None, :, None]).long()
        cm = torch.cat([torch.zeros(B, NQ, T, dtype=torch.long), cm], 1)
        cm = torch.cat([torch.ones(B, S, NQ, dtype=torch.long), cm], -1)
        ext = cm[:, None, :, :] * mask[:, None, None, :]
    else:
        ext = mask[:, None, None, :].expand(B, 1, S, S)
    bias = (1.0 - ext.double()) * -10000.0
    for l in range(L):
        p = f"layer.{l}."
        a = attn(x, x, p + "attention", bias)
        x = ln(x + lin(a, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        xq, xt = x[:, :NQ], x[:, NQ:]
        if l % 2 == 0:
            c = attn(xq, img, p + "crossattention", None)
            xq = ln(xq + lin(c, p + "crossattention.output.dense"), p + "crossattention.output.LayerNorm")
        xq = ln(xq + lin(gelu(lin(xq, p + "intermediate_query.dense")), p + "output_query.dense"), p + "output_query.LayerNorm")
        xt = ln(xt + lin(gelu(lin(xt, p + "intermediate.dense")), p + "output.dense"), p + "output.LayerNorm")
        x = torch.cat([xq, xt], 1)
    return x

itg, itm = forward(True), forward(False)
h = ln(gelu(lin(itg, "cls.predictions.transform.dense")), "cls.predictions.transform.LayerNorm")
lm = h @ W[P + "embeddings.word_embeddings.weight"].T + W[P + "cls.predictions.bias"]
json.dump({"itg": itg.reshape(-1).tolist(), "itm": itm.reshape(-1).tolist(), "lm": lm.reshape(-1).tolist()}, open("torch_out.json", "w"))
print("ok", itg.shape, lm.shape)
