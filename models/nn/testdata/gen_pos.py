# Golden values for pos_test.go: torch bicubic interpolation of a grid
# (F.interpolate, align_corners=False, as Qwen-VL get_abs_pos) and MAE's
# get_2d_sincos_pos_embed. Run: /usr/bin/python3 gen_pos.py > pos_golden.json
import json, numpy as np, torch, torch.nn.functional as F

def sincos_1d(d, pos):
    omega = np.arange(d // 2, dtype=np.float64) / (d / 2.0)
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)

def sincos_2d(d, gh, gw):
    grid = np.meshgrid(np.arange(gw, dtype=np.float64), np.arange(gh, dtype=np.float64))
    emb_h = sincos_1d(d // 2, grid[0])
    emb_w = sincos_1d(d // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)

g = torch.Generator().manual_seed(0)
x = torch.randn(3, 4, 2, generator=g, dtype=torch.float64)  # ih=3, iw=4, C=2
y = F.interpolate(x.permute(2, 0, 1).unsqueeze(0), size=(5, 7), mode="bicubic", align_corners=False)
y = y.squeeze(0).permute(1, 2, 0)
print(json.dumps({
    "bicubic_in": x.reshape(-1).tolist(), "bicubic_out": y.reshape(-1).tolist(),
    "sincos_3x2x8": sincos_2d(8, 3, 2).reshape(-1).tolist(),
}))
