"""Tiny EVA ViT checkpoints as Blip2ForConditionalGeneration stores its
vision tower (vision_model.*), with PyTorch reference outputs: run from
models/hf/testdata with /usr/bin/python3; writes eva/ (F32, qkv_bias true,
layer_norm_eps 1e-6), eva_nobias/ (F16, qkv_bias false, eps 1e-5),
eva_out.json and eva_nobias_out.json. Only the vision tower's tensors are
written; config.json is a whole Blip2 config whose vision_config is read.

The modules follow transformers
src/transformers/models/blip_2/modeling_blip_2.py (huggingface/transformers
00381853, read through the library's code search):
  - Blip2VisionEmbeddings: class_embedding [1,1,H] and position_embedding
    [1,N+1,H] are bare Parameters, the patch Conv2d has a bias;
    embeddings = [class; patches] + position_embedding[:, :T].
    For another resolution this follows CLIP's interpolate_pos_encoding
    (CLS position kept, grid resized by F.interpolate(size=..., bicubic,
    align_corners=False)), which later transformers versions give Blip2 too;
    00381853 itself has no interpolation.
  - Blip2Attention: one qkv Linear without bias; with qkv_bias the bias is
    cat(q_bias, zeros_like(v_bias), v_bias); the output is reshaped to
    [B, T, 3, heads, d] and permuted (2, 0, 3, 1, 4), so q, k, v are the
    thirds of dim 0 of qkv.weight; scale head_dim**-0.5; `projection` Linear.
  - Blip2MLP (fc1, exact "gelu", fc2); Blip2EncoderLayer pre-LN blocks.
    00381853 builds the LayerNorms without eps (1e-5); later versions pass
    config.layer_norm_eps, which is what is followed here (and why the
    second checkpoint uses 1e-5).
  - Blip2VisionModel: last_hidden_state = post_layernorm(encoder output) over
    the whole sequence; pooler_output = post_layernorm(last_hidden_state[:, 0])
    (the LayerNorm applied a second time); hidden_states as CLIP's.
"""
import torch
import torch.nn.functional as F
from torch import nn

import gen_clip as g
import st


class Blip2VisionEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.patch_size = c.patch_size
        self.class_embedding = nn.Parameter(torch.randn(1, 1, c.hidden_size))
        self.patch_embedding = nn.Conv2d(3, c.hidden_size, c.patch_size, c.patch_size)
        self.num_positions = (c.image_size // c.patch_size) ** 2 + 1
        self.position_embedding = nn.Parameter(torch.randn(1, self.num_positions, c.hidden_size))

    def interpolate_pos_encoding(self, embeddings, height, width):
        num_patches, num_positions = embeddings.shape[1] - 1, self.position_embedding.shape[1] - 1
        if num_patches == num_positions and height == width:
            return self.position_embedding
        cls, patch = self.position_embedding[:, :1], self.position_embedding[:, 1:]
        dim = embeddings.shape[-1]
        s = int(num_positions ** 0.5)
        patch = patch.reshape(1, s, s, dim).permute(0, 3, 1, 2)
        patch = F.interpolate(patch, size=(height // self.patch_size, width // self.patch_size), mode="bicubic",
                              align_corners=False)
        return torch.cat((cls, patch.permute(0, 2, 3, 1).reshape(1, -1, dim)), dim=1)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        b, _, h, w = pixel_values.shape
        patch = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        emb = torch.cat([self.class_embedding.expand(b, 1, -1), patch], dim=1)
        pos = self.interpolate_pos_encoding(emb, h, w) if interpolate_pos_encoding else self.position_embedding
        return emb + pos[:, :emb.size(1), :]


class Blip2Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_dim, self.num_heads = c.hidden_size, c.num_attention_heads
        self.scale = (self.embed_dim // self.num_heads) ** -0.5
        self.qkv = nn.Linear(self.embed_dim, 3 * self.embed_dim, bias=False)
        if c.qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(self.embed_dim))
            self.v_bias = nn.Parameter(torch.zeros(self.embed_dim))
        else:
            self.q_bias = self.v_bias = None
        self.projection = nn.Linear(self.embed_dim, self.embed_dim)

    def forward(self, x):
        bsz, tgt_len, embed_dim = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        qkv = qkv.reshape(bsz, tgt_len, 3, self.num_heads, embed_dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
        o = torch.matmul(a, v).permute(0, 2, 1, 3).reshape(bsz, tgt_len, embed_dim)
        return self.projection(o)


class Blip2VisionModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = Blip2VisionEmbeddings(c)
        self.encoder = g.CLIPEncoder(c, attn=Blip2Attention)
        self.post_layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        last, hidden = self.encoder(self.embeddings(pixel_values, interpolate_pos_encoding))
        last = self.post_layernorm(last)
        return {"last_hidden_state": last, "pooler_output": self.post_layernorm(last[:, 0, :]),
                "hidden_states": hidden}


class Blip2Vision(nn.Module):
    """Holds the tower as Blip2ForConditionalGeneration does (vision_model.*)."""

    def __init__(self, c):
        super().__init__()
        self.vision_model = Blip2VisionModel(c)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        return self.vision_model(pixel_values, interpolate_pos_encoding)


VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, image_size=12,
              patch_size=4, hidden_act="gelu", layer_norm_eps=1e-6, qkv_bias=True)


def blip2_config(vc, dtype):
    return dict(architectures=["Blip2ForConditionalGeneration"], model_type="blip-2", num_query_tokens=4,
                torch_dtype=dtype, vision_config=dict(vc, model_type="blip_2_vision_model"),
                qformer_config=dict(model_type="blip_2_qformer", hidden_size=8, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=16, encoder_hidden_size=16),
                text_config=dict(model_type="opt", hidden_size=8, num_hidden_layers=1, vocab_size=50))


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(777)
    for name, vc, dtype, tname in [("eva", VISION, torch.float32, "float32"),
                                   ("eva_nobias", dict(VISION, qkv_bias=False, layer_norm_eps=1e-5), torch.float16,
                                    "float16")]:
        m = Blip2Vision(g.Cfg(vc)).double()
        g.randomize(m, gen, dtype)
        g.write_config(name, blip2_config(vc, tname))
        st.save(name + "/model.safetensors", g.state(m, dtype))
        with torch.no_grad():
            g.write_json(name + "_out.json", g.reference(m, gen, [(12, 12), (20, 20)]))


if __name__ == "__main__":
    main()
