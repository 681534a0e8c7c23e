"""The PyTorch side of `loom bench llava-step`: one LLaVA-1.5 training step
(frozen CLIP tower, mlp2x_gelu projector, LLaMA decoder) on the Hugging Face
LlavaForConditionalGeneration directory Loom exported, with the batch Loom
wrote, in float32.

It reuses the reference transcriptions that models/hf's tests check Loom's
forward against (argv[2] is that directory, models/hf/testdata):
gen_clip.CLIPVisionModel (modeling_clip.py) for the tower and gen_llava.llama
(modeling_llama.py's LlamaModel) for the decoder, run in float32. The tower
runs without autograd and stops at the penultimate layer, the one LLaVA
reads (vision_feature_layer -2), as Loom's does. The loss is
LlavaForConditionalGeneration's: mean next-token cross-entropy over labels
!= -100 (image positions are -100).

argv[1]: the exported directory (config.json, model.safetensors,
batch.json: pixel_values, shape, input_ids [B, T] with the image
placeholders expanded). argv[3]: JSON {threads, stage ("pretrain": the
projector trains; "finetune": projector and LLM), lr, weight_decay}.
loom_blas() is prepended by the Go side (kbench.BLASProbe).

Protocol: one JSON line after the first forward (params, trainable, loss
before any update, torch version, threads, blas), then for every "step" line
on stdin one AdamW step and {"seconds", "loss"}.
"""
import json
import sys
import time

import torch
import torch.nn.functional as F

out_dir, ref_dir, arg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, ref_dir)
import gen_clip as g  # noqa: E402
import gen_llava as gl  # noqa: E402
import st  # noqa: E402

torch.set_num_threads(arg["threads"])
conf = json.load(open(out_dir + "/config.json"))
vc, tc = conf["vision_config"], conf["text_config"]
W = {k: v.float() for k, v in st.load(out_dir + "/model.safetensors").items()}
batch = json.load(open(out_dir + "/batch.json"))
px = torch.tensor(batch["pixel_values"], dtype=torch.float32).reshape(batch["shape"])
ids = torch.tensor(batch["input_ids"], dtype=torch.int64)
image = conf["image_token_index"]
V = tc["vocab_size"]

tower = g.CLIPVisionModel(g.Cfg(vc)).float()
# LLaVA reads the penultimate layer, so the tower's post_layernorm is never
# used, and Loom's export has none; anything else missing is an error.
r = tower.load_state_dict({k[len("vision_tower."):]: v for k, v in W.items() if k.startswith("vision_tower.")}, strict=False)
if r.unexpected_keys or any("post_layernorm" not in k for k in r.missing_keys):
    raise SystemExit("vision tower: missing %s, unexpected %s" % (r.missing_keys, r.unexpected_keys))
tower.requires_grad_(False)
vm = tower.vision_model

lm = "language_model.model."
trainable = [k for k in W if k.startswith("multi_modal_projector.")]
if arg["stage"] == "finetune":
    trainable += [k for k in W if k.startswith("language_model.")]
for k in trainable:
    W[k].requires_grad_(True)
decay = [W[k] for k in trainable if W[k].dim() >= 2]
no_decay = [W[k] for k in trainable if W[k].dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": arg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=arg["lr"], betas=(0.9, 0.999), eps=1e-8)
labels = ids.masked_fill(ids == image, -100)
mask = (ids == image).unsqueeze(-1)
P = "multi_modal_projector."


def loss_fn():
    with torch.no_grad():
        x = vm.pre_layrnorm(vm.embeddings(px))
        for layer in vm.encoder.layers[:-1]:
            x = layer(x)
        feat = x[:, 1:]
    f = F.linear(feat, W[P + "linear_1.weight"], W[P + "linear_1.bias"])
    f = F.linear(F.gelu(f), W[P + "linear_2.weight"], W[P + "linear_2.bias"])
    emb = W[lm + "embed_tokens.weight"][ids]
    emb = emb.masked_scatter(mask.expand_as(emb), f.to(emb.dtype))
    logits = F.linear(gl.llama(W, emb, tc, lm), W["language_model.lm_head.weight"])
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)


with torch.no_grad():
    loss0 = loss_fn().item()
print(json.dumps({"params": sum(v.numel() for v in W.values()), "trainable": sum(W[k].numel() for k in trainable),
                  "loss": loss0, "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "blas": loom_blas()}), flush=True)  # noqa: F821 (prepended)
for line in sys.stdin:
    if line.strip() != "step":
        break
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=False)
    loss = loss_fn()
    loss.backward()
    opt.step()
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "loss": loss.item()}), flush=True)
