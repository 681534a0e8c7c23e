"""Tiny Blip2ForConditionalGeneration checkpoint (EVA vision + Q-Former +
OPT) and the Q-Former's reference outputs, for blip2_test.go.

Writes testdata/blip2/{config.json, model.safetensors, reference.safetensors}.

The modules below transcribe, for the eval path (dropout off, no cache, no
head mask), transformers src/transformers/models/blip_2/modeling_blip_2.py
(commit e0e65335):
  - Blip2QFormerMultiHeadAttention (query/key/value, key and value from
    encoder_hidden_size in cross-attention, scores / sqrt(d), + extended
    mask, softmax), Blip2QFormerSelfOutput, Blip2QFormerAttention
    ("attention" + "output": LAVIS's attention.self renamed),
    Blip2QFormerIntermediate (ACT2FN["gelu"], exact erf),
    Blip2QFormerOutput, Blip2QFormerLayer (crossattention when
    layer_idx % cross_attention_frequency == 0, applied to the first
    query_length rows; intermediate_query/output_query on them; the text
    FFN intermediate/output only with use_qformer_text_input, here off),
    Blip2QFormerEncoder, and Blip2QFormerModel.forward (layernorm on the
    query embeddings, all-ones attention mask and encoder mask, which
    get_extended_attention_mask / invert_attention_mask turn into zeros);
  - Blip2ForConditionalGeneration's parameter tree: vision_model,
    query_tokens [1, num_query_tokens, H], qformer, language_projection,
    language_model. The vision tower follows Blip2VisionEmbeddings
    (class_embedding, patch_embedding conv with bias, position_embedding
    a bare Parameter), Blip2EncoderLayer (layer_norm1, self_attn.qkv
    without bias + q_bias/v_bias as the released checkpoints store them,
    self_attn.projection, layer_norm2, mlp.fc1/fc2) and post_layernorm; the
    language model OPTForCausalLM's (src/transformers/models/opt/
    modeling_opt.py: model.decoder.{embed_tokens, embed_positions
    [max_pos + 2, H], final_layer_norm, layers.N.{self_attn.{q,k,v,out}_proj,
    self_attn_layer_norm, fc1, fc2, final_layer_norm}}; lm_head tied to
    embed_tokens, so save_pretrained leaves it out). Only the Q-Former
    and the projection are run here.

Reference outputs (float64, from the float32 weights the checkpoint holds):
  image_embeds   fixed image features [B, Nimg, vision H] (the Q-Former's
                 encoder_hidden_states, i.e. vision_model's output after
                 post_layernorm)
  qformer_out    Blip2QFormerModel(query_tokens, encoder_hidden_states=
                 image_embeds).last_hidden_state  [B, Nq, H]
  projected      language_projection(qformer_out)  [B, Nq, text H]

Run: cd models/hf/testdata && /usr/bin/python3 gen_blip2.py
"""
import json
import math
import os

import torch
from torch import nn

import st

QF = {
    "attention_probs_dropout_prob": 0.1,
    "cross_attention_frequency": 2,
    "encoder_hidden_size": 12,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 16,
    "initializer_range": 0.02,
    "intermediate_size": 32,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 24,
    "model_type": "blip_2_qformer",
    "num_attention_heads": 2,
    "num_hidden_layers": 3,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "use_qformer_text_input": False,
    "vocab_size": 40,
}
VIS = {
    "attention_dropout": 0.0,
    "hidden_act": "gelu",
    "hidden_size": 12,
    "image_size": 8,
    "initializer_range": 1e-10,
    "intermediate_size": 24,
    "layer_norm_eps": 1e-6,
    "model_type": "blip_2_vision_model",
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "patch_size": 4,
    "qkv_bias": True,
}
TXT = {
    "activation_function": "relu",
    "bos_token_id": 2,
    "do_layer_norm_before": True,
    "enable_bias": True,
    "eos_token_id": 2,
    "ffn_dim": 32,
    "hidden_size": 16,
    "layer_norm_elementwise_affine": True,
    "max_position_embeddings": 32,
    "model_type": "opt",
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "pad_token_id": 1,
    "tie_word_embeddings": True,
    "vocab_size": 50,
    "word_embed_proj_dim": 16,
}
CFG = {
    "architectures": ["Blip2ForConditionalGeneration"],
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "model_type": "blip-2",
    "num_query_tokens": 4,
    "qformer_config": QF,
    "text_config": TXT,
    "tie_word_embeddings": True,
    "use_decoder_only_language_model": True,
    "vision_config": VIS,
}


class C:
    def __init__(self, d):
        self.__dict__.update(d)


# --- Q-Former (Blip2QFormerModel) -------------------------------------------

class Blip2QFormerMultiHeadAttention(nn.Module):
    def __init__(self, c, is_cross_attention=False):
        super().__init__()
        self.num_attention_heads = c.num_attention_heads
        self.attention_head_size = c.hidden_size // c.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = nn.Linear(c.hidden_size, self.all_head_size)
        kv = c.encoder_hidden_size if is_cross_attention else c.hidden_size
        self.key = nn.Linear(kv, self.all_head_size)
        self.value = nn.Linear(kv, self.all_head_size)

    def transpose_for_scores(self, x):
        x = x.view(*x.size()[:-1], self.num_attention_heads, self.attention_head_size)
        return x.permute(0, 2, 1, 3)

    def forward(self, hidden_states, attention_mask, encoder_hidden_states=None, encoder_attention_mask=None):
        if encoder_hidden_states is not None:
            key_layer = self.transpose_for_scores(self.key(encoder_hidden_states))
            value_layer = self.transpose_for_scores(self.value(encoder_hidden_states))
            attention_mask = encoder_attention_mask
        else:
            key_layer = self.transpose_for_scores(self.key(hidden_states))
            value_layer = self.transpose_for_scores(self.value(hidden_states))
        query_layer = self.transpose_for_scores(self.query(hidden_states))
        attention_scores = torch.matmul(query_layer, key_layer.transpose(-1, -2))
        attention_scores = attention_scores / math.sqrt(self.attention_head_size)
        if attention_mask is not None:
            attention_scores = attention_scores + attention_mask
        attention_probs = nn.Softmax(dim=-1)(attention_scores)
        context_layer = torch.matmul(attention_probs, value_layer).permute(0, 2, 1, 3).contiguous()
        return context_layer.view(*context_layer.size()[:-2], self.all_head_size)


class Blip2QFormerSelfOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dense(hidden_states) + input_tensor)


class Blip2QFormerAttention(nn.Module):
    def __init__(self, c, is_cross_attention=False):
        super().__init__()
        self.attention = Blip2QFormerMultiHeadAttention(c, is_cross_attention)
        self.output = Blip2QFormerSelfOutput(c)

    def forward(self, hidden_states, attention_mask, encoder_hidden_states=None, encoder_attention_mask=None):
        a = self.attention(hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask)
        return self.output(a, hidden_states)


class Blip2QFormerIntermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)

    def forward(self, x):
        return nn.functional.gelu(self.dense(x))


class Blip2QFormerOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.intermediate_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dense(hidden_states) + input_tensor)


class Blip2QFormerLayer(nn.Module):
    def __init__(self, c, layer_idx):
        super().__init__()
        self.attention = Blip2QFormerAttention(c)
        self.has_cross_attention = layer_idx % c.cross_attention_frequency == 0
        if self.has_cross_attention:
            self.crossattention = Blip2QFormerAttention(c, is_cross_attention=True)
        if c.use_qformer_text_input:
            self.intermediate = Blip2QFormerIntermediate(c)
            self.output = Blip2QFormerOutput(c)
        self.intermediate_query = Blip2QFormerIntermediate(c)
        self.output_query = Blip2QFormerOutput(c)

    def forward(self, hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask, query_length):
        attention_output = self.attention(hidden_states, attention_mask)
        query_attention_output = attention_output[:, :query_length, :]
        if self.has_cross_attention:
            query_attention_output = self.crossattention(
                query_attention_output, attention_mask, encoder_hidden_states, encoder_attention_mask)
        return self.output_query(self.intermediate_query(query_attention_output), query_attention_output)


class Blip2QFormerEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([Blip2QFormerLayer(c, i) for i in range(c.num_hidden_layers)])

    def forward(self, x, mask, enc, enc_mask, query_length):
        for l in self.layer:
            x = l(x, mask, enc, enc_mask, query_length)
        return x


class Blip2QFormerModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.encoder = Blip2QFormerEncoder(c)

    def forward(self, query_embeds, encoder_hidden_states):
        query_length = query_embeds.shape[1]
        embedding_output = self.layernorm(query_embeds)
        b, s = embedding_output.shape[:2]
        attention_mask = torch.ones((b, s), dtype=embedding_output.dtype)
        ext = (1.0 - attention_mask[:, None, None, :]) * -10000.0  # get_extended_attention_mask
        enc_mask = torch.ones(encoder_hidden_states.shape[:2], dtype=embedding_output.dtype)
        enc_ext = (1.0 - enc_mask[:, None, None, :]) * torch.finfo(embedding_output.dtype).min  # invert_attention_mask
        return self.encoder(embedding_output, ext, encoder_hidden_states, enc_ext, query_length)


# --- Vision (Blip2VisionModel) and OPT: parameter trees only ----------------

class Blip2VisionEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.randn(1, 1, c.hidden_size))
        self.patch_embedding = nn.Conv2d(3, c.hidden_size, kernel_size=c.patch_size, stride=c.patch_size)
        n = (c.image_size // c.patch_size) ** 2 + 1
        self.position_embedding = nn.Parameter(torch.randn(1, n, c.hidden_size))


class Blip2Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.qkv = nn.Linear(c.hidden_size, 3 * c.hidden_size, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(c.hidden_size))
        self.v_bias = nn.Parameter(torch.zeros(c.hidden_size))
        self.projection = nn.Linear(c.hidden_size, c.hidden_size)


class Blip2MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Linear(c.hidden_size, c.intermediate_size)
        self.fc2 = nn.Linear(c.intermediate_size, c.hidden_size)


class Blip2EncoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = Blip2Attention(c)
        self.layer_norm1 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlp = Blip2MLP(c)
        self.layer_norm2 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)


class Blip2Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList([Blip2EncoderLayer(c) for _ in range(c.num_hidden_layers)])


class Blip2VisionModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = Blip2VisionEmbeddings(c)
        self.encoder = Blip2Encoder(c)
        self.post_layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)


class OPTAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        for n in ("k_proj", "v_proj", "q_proj", "out_proj"):
            setattr(self, n, nn.Linear(c.hidden_size, c.hidden_size, bias=c.enable_bias))


class OPTDecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = OPTAttention(c)
        self.self_attn_layer_norm = nn.LayerNorm(c.hidden_size)
        self.fc1 = nn.Linear(c.hidden_size, c.ffn_dim)
        self.fc2 = nn.Linear(c.ffn_dim, c.hidden_size)
        self.final_layer_norm = nn.LayerNorm(c.hidden_size)


class OPTDecoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.word_embed_proj_dim, c.pad_token_id)
        self.embed_positions = nn.Embedding(c.max_position_embeddings + 2, c.hidden_size)  # OPTLearnedPositionalEmbedding
        self.final_layer_norm = nn.LayerNorm(c.hidden_size)
        self.layers = nn.ModuleList([OPTDecoderLayer(c) for _ in range(c.num_hidden_layers)])


class OPTModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.decoder = OPTDecoder(c)


class OPTForCausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.model = OPTModel(c)
        # lm_head is tied to model.decoder.embed_tokens: not saved.


class Blip2ForConditionalGeneration(nn.Module):
    def __init__(self):
        super().__init__()
        self.vision_model = Blip2VisionModel(C(VIS))
        self.query_tokens = nn.Parameter(torch.zeros(1, CFG["num_query_tokens"], QF["hidden_size"]))
        self.qformer = Blip2QFormerModel(C(QF))
        self.language_projection = nn.Linear(QF["hidden_size"], TXT["hidden_size"])
        self.language_model = OPTForCausalLM(C(TXT))


def main():
    torch.manual_seed(2)
    model = Blip2ForConditionalGeneration()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name.lower() or "layer_norm" in name:
                p.copy_((1 if name.endswith("weight") else 0) + 0.1 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "blip2")
    os.makedirs(out, exist_ok=True)
    st.save(os.path.join(out, "model.safetensors"), sd)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(CFG, f, indent=2, sort_keys=True)
        f.write("\n")

    model = model.double().eval()
    image_embeds = torch.randn(2, 5, VIS["hidden_size"], dtype=torch.float64)
    image_embeds = image_embeds.float().double()  # exactly representable in float32
    with torch.no_grad():
        q = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
        qout = model.qformer(q, image_embeds)
        proj = model.language_projection(qout)
    st.save(os.path.join(out, "reference.safetensors"), {
        "image_embeds": image_embeds,
        "qformer_out": qout,
        "projected": proj,
    })


if __name__ == "__main__":
    main()
