"""Tiny SigLIP vision checkpoint (SiglipVisionModel, BF16) and its PyTorch
reference outputs: run from models/hf/testdata with /usr/bin/python3;
writes siglip/ and siglip_out.json.

The modules follow transformers
src/transformers/models/siglip/modeling_siglip.py (huggingface/transformers
00b20656, read through the library's code search), with attribute names
that give the checkpoint's tensor names:
  - SiglipVisionEmbeddings: the patch Conv2d has a bias (padding "valid"),
    position_embedding has (S/p)^2 rows and there is no class token. For
    another resolution the grid is resized with
    F.interpolate(size=(h/p, w/p), mode="bicubic", align_corners=False), as
    transformers v4.57 does (the copy vLLM keeps, "Adapted from
    transformers v4.57.3 siglip/modeling_siglip.py"); the older 00b20656
    passed scale_factor=((h/p+0.1)/sqrt(N), ...) instead, which samples
    slightly different points, so positions interpolated by old
    transformers differ from these.
  - SiglipAttention and SiglipMLP are CLIP's (gen_clip.py), SiglipEncoderLayer
    the same pre-LN block; hidden_act gelu_pytorch_tanh, layer_norm_eps 1e-6.
  - SiglipVisionTransformer: embeddings -> encoder -> post_layernorm over the
    whole sequence (last_hidden_state); pooler_output = head(last_hidden_state).
  - SiglipMultiheadAttentionPoolingHead: probe [1,1,H] repeated over the
    batch, torch.nn.MultiheadAttention(H, heads, batch_first=True)(probe, x, x)
    (packed in_proj_weight [3H,H] = q;k;v), then a + mlp(layernorm(a)), [:, 0].
"""
import torch
import torch.nn.functional as F
from torch import nn

import gen_clip as g
import st


class SiglipVisionEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.patch_size = c.patch_size
        self.patch_embedding = nn.Conv2d(c.num_channels, c.hidden_size, c.patch_size, c.patch_size, padding="valid")
        self.num_positions = (c.image_size // c.patch_size) ** 2
        self.position_embedding = nn.Embedding(self.num_positions, c.hidden_size)

    def interpolate_pos_encoding(self, embeddings, height, width):
        pos = self.position_embedding.weight.unsqueeze(0)
        num_patches, num_positions = embeddings.shape[1], pos.shape[1]
        if num_patches == num_positions and height == width:
            return pos
        dim = embeddings.shape[-1]
        s = int(num_positions ** 0.5)
        pos = pos.reshape(1, s, s, dim).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(height // self.patch_size, width // self.patch_size), mode="bicubic",
                            align_corners=False)
        return pos.permute(0, 2, 3, 1).reshape(1, -1, dim)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        _, _, h, w = pixel_values.shape
        emb = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        if interpolate_pos_encoding:
            return emb + self.interpolate_pos_encoding(emb, h, w)
        return emb + self.position_embedding.weight.unsqueeze(0)


class SiglipMultiheadAttentionPoolingHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.probe = nn.Parameter(torch.randn(1, 1, c.hidden_size))
        self.attention = nn.MultiheadAttention(c.hidden_size, c.num_attention_heads, batch_first=True)
        self.layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlp = g.CLIPMLP(c)

    def forward(self, x):
        probe = self.probe.repeat(x.shape[0], 1, 1)
        a = self.attention(probe, x, x)[0]
        a = a + self.mlp(self.layernorm(a))
        return a[:, 0]


class SiglipVisionTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = SiglipVisionEmbeddings(c)
        self.encoder = g.CLIPEncoder(c)
        self.post_layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.head = SiglipMultiheadAttentionPoolingHead(c)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        last, hidden = self.encoder(self.embeddings(pixel_values, interpolate_pos_encoding))
        last = self.post_layernorm(last)
        return {"last_hidden_state": last, "pooler_output": self.head(last), "hidden_states": hidden}


class SiglipVisionModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.vision_model = SiglipVisionTransformer(c)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        return self.vision_model(pixel_values, interpolate_pos_encoding)


VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, num_channels=3,
              image_size=12, patch_size=4, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(4321)
    c = g.Cfg(VISION)
    m = SiglipVisionModel(c).double()
    g.randomize(m, gen, torch.bfloat16)
    g.write_config("siglip", dict(VISION, architectures=["SiglipVisionModel"], model_type="siglip_vision_model",
                                  vision_use_head=True, torch_dtype="bfloat16"))
    st.save("siglip/model.safetensors", g.state(m, torch.bfloat16))
    with torch.no_grad():
        g.write_json("siglip_out.json", g.reference(m, gen, [(12, 12), (20, 20), (16, 8), (14, 15)]))


if __name__ == "__main__":
    main()
