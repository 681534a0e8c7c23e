"""Tiny BERT checkpoint and reference outputs for bert_test.go.

Writes testdata/bert/{config.json, model.safetensors, reference.safetensors}.

The modules below transcribe, for the eval path (dropout off, no cache, no
head mask, absolute positions):
  - transformers src/transformers/models/bert/modeling_bert.py (commit
    004ad5f5): BertEmbeddings (word + token_type + position, LayerNorm),
    BertSelfAttention (scores / sqrt(d) + extended mask, softmax),
    BertSelfOutput, BertIntermediate (ACT2FN["gelu"] = exact erf GELU),
    BertOutput, BertLayer, BertEncoder, BertPooler, BertModel, and the
    BertForPreTraining heads BertLMPredictionHead (transform dense -> gelu
    -> LayerNorm, decoder tied to the word embeddings, + bias) and
    cls.seq_relationship; the extended mask is modeling_utils'
    get_extended_attention_mask: (1 - mask) * -10000.
  - LAVIS lavis/models/blip2_models/Qformer.py (c6bec01f): its
    BertEmbeddings has word and position embeddings only (no
    token_type_embeddings), so BertLMHeadModel.from_pretrained
    ("bert-base-uncased") drops BERT's token-type table; a text-only
    Qformer.bert(...) pass (as Blip2Qformer.forward's ITC text pass) is
    the BERT encoder on word + position embeddings.
The module tree produces the checkpoint's tensor names (state_dict keys,
"bert." and "cls." as BertForPreTraining), so the names are transformers'.

Reference outputs (float64, from the float32 weights the checkpoint holds):
  bert_last_hidden   BertModel(input_ids, attention_mask).last_hidden_state
  lavis_text         the LAVIS Q-Former's text-only last hidden state
  lavis_mlm          BertLMPredictionHead(lavis_text) (the first V logits)
  input_ids, attention_mask

Run: cd models/hf/testdata && /usr/bin/python3 gen_bert.py
"""
import json
import math
import os

import torch
from torch import nn

import st

CFG = {
    "architectures": ["BertForPreTraining"],
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 16,
    "initializer_range": 0.02,
    "intermediate_size": 32,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 24,
    "model_type": "bert",
    "num_attention_heads": 2,
    "num_hidden_layers": 3,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "type_vocab_size": 2,
    "vocab_size": 40,
}


class C:
    def __init__(self, d):
        self.__dict__.update(d)


cfg = C(CFG)


class BertEmbeddings(nn.Module):
    def __init__(self, c, token_type=True):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        if token_type:
            self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.register_buffer("position_ids", torch.arange(c.max_position_embeddings).expand((1, -1)))

    def forward(self, input_ids):
        seq_length = input_ids.size(1)
        position_ids = self.position_ids[:, :seq_length]
        embeddings = self.word_embeddings(input_ids)
        if hasattr(self, "token_type_embeddings"):
            token_type_ids = torch.zeros(input_ids.shape, dtype=torch.long)
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        embeddings = embeddings + self.position_embeddings(position_ids)
        return self.LayerNorm(embeddings)


class BertSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.num_attention_heads = c.num_attention_heads
        self.attention_head_size = c.hidden_size // c.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = nn.Linear(c.hidden_size, self.all_head_size)
        self.key = nn.Linear(c.hidden_size, self.all_head_size)
        self.value = nn.Linear(c.hidden_size, self.all_head_size)

    def transpose_for_scores(self, x):
        x = x.view(*x.size()[:-1], self.num_attention_heads, self.attention_head_size)
        return x.permute(0, 2, 1, 3)

    def forward(self, hidden_states, attention_mask):
        query_layer = self.transpose_for_scores(self.query(hidden_states))
        key_layer = self.transpose_for_scores(self.key(hidden_states))
        value_layer = self.transpose_for_scores(self.value(hidden_states))
        attention_scores = torch.matmul(query_layer, key_layer.transpose(-1, -2))
        attention_scores = attention_scores / math.sqrt(self.attention_head_size)
        attention_scores = attention_scores + attention_mask
        attention_probs = nn.Softmax(dim=-1)(attention_scores)
        context_layer = torch.matmul(attention_probs, value_layer).permute(0, 2, 1, 3).contiguous()
        return context_layer.view(*context_layer.size()[:-2], self.all_head_size)


class BertSelfOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dense(hidden_states) + input_tensor)


class BertAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertSelfOutput(c)

    def forward(self, hidden_states, attention_mask):
        return self.output(self.self(hidden_states, attention_mask), hidden_states)


class BertIntermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)

    def forward(self, x):
        return nn.functional.gelu(self.dense(x))  # ACT2FN["gelu"]: exact erf


class BertOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.intermediate_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dense(hidden_states) + input_tensor)


class BertLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertOutput(c)

    def forward(self, hidden_states, attention_mask):
        attention_output = self.attention(hidden_states, attention_mask)
        return self.output(self.intermediate(attention_output), attention_output)


class BertEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(c) for _ in range(c.num_hidden_layers)])

    def forward(self, x, mask):
        for l in self.layer:
            x = l(x, mask)
        return x


class BertPooler(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)


class BertModel(nn.Module):
    def __init__(self, c, token_type=True, pooler=True):
        super().__init__()
        self.embeddings = BertEmbeddings(c, token_type)
        self.encoder = BertEncoder(c)
        if pooler:
            self.pooler = BertPooler(c)

    def forward(self, input_ids, attention_mask):
        ext = attention_mask[:, None, None, :].to(torch.float64)
        ext = (1.0 - ext) * -10000.0  # get_extended_attention_mask
        return self.encoder(self.embeddings(input_ids), ext)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(nn.functional.gelu(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transform = BertPredictionHeadTransform(c)
        self.decoder = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))
        self.decoder.bias = self.bias

    def forward(self, x):
        return self.decoder(self.transform(x))


class BertPreTrainingHeads(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.predictions = BertLMPredictionHead(c)
        self.seq_relationship = nn.Linear(c.hidden_size, 2)


class BertForPreTraining(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bert = BertModel(c)
        self.cls = BertPreTrainingHeads(c)
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight  # tie_weights


def main():
    torch.manual_seed(14)
    model = BertForPreTraining(cfg)
    # Random weights of a realistic spread: N(0, 0.2) matrices and
    # embeddings, LayerNorm weights 1 ± 0.1, biases N(0, 0.1).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bert")
    os.makedirs(out, exist_ok=True)
    st.save(os.path.join(out, "model.safetensors"), sd)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(CFG, f, indent=2, sort_keys=True)
        f.write("\n")

    model = model.double().eval()
    input_ids = torch.tensor([[1, 7, 12, 39, 5, 2], [1, 30, 4, 2, 0, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        bert_last = model.bert(input_ids, attention_mask)
        # LAVIS: the same encoder on embeddings without the token type.
        lavis = BertModel(cfg, token_type=False, pooler=False).double()
        lsd = {k: v for k, v in model.bert.state_dict().items()
               if not k.startswith("pooler.") and "token_type" not in k}
        lavis.load_state_dict(lsd)
        lavis_text = lavis(input_ids, attention_mask)
        lavis_mlm = model.cls.predictions(lavis_text)
    st.save(os.path.join(out, "reference.safetensors"), {
        "bert_last_hidden": bert_last,
        "lavis_text": lavis_text,
        "lavis_mlm": lavis_mlm,
        "input_ids": input_ids,
        "attention_mask": attention_mask,
    })


if __name__ == "__main__":
    main()
