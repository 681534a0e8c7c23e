#version 450
#extension GL_GOOGLE_include_directive : require
// Attention backward, dq part, one thread per (query row, head): with p =
// exp(scale·q·kᵀ − lse) recomputed from the FINAL lse and ds = p·(do·vᵀ −
// delta), dq += scale·Σ_j ds_j·k_j (accumulated). do at aOff, lse at bOff,
// delta at cOff, dq at dOff.
#include "attn_common.glsl"
layout(std430, binding = 4) readonly buffer DOb { float dout[]; };
layout(std430, binding = 5) readonly buffer Lb { float lse[]; };
layout(std430, binding = 6) readonly buffer Db { float delta[]; };
layout(std430, binding = 7) buffer DQb { float dq[]; };
void main() {
    uint t = invocation();
    if (t >= p.sq * p.h) return;
    uint i = t / p.h, hh = t % p.h;
    float L = lse[p.bOff + t];
    if (isinf(L)) return; // no allowed key: no gradient
    float dl = delta[p.cOff + t];
    float acc[MAXD];
    for (uint c = 0; c < p.d; c++) acc[c] = 0.0;
    uint db = p.aOff + t * p.d;
    for (uint j = 0; j < p.sk; j++) {
        if (!allowed(i, j)) continue;
        float pr = exp(score(i, j, hh) - L);
        uint vb = p.vOff + (j * p.h + hh) * p.d, kb = p.kOff + (j * p.h + hh) * p.d;
        float dp = 0.0;
        for (uint c = 0; c < p.d; c++) dp += dout[db + c] * v[vb + c];
        float ds = pr * (dp - dl);
        for (uint c = 0; c < p.d; c++) acc[c] += ds * k[kb + c];
    }
    uint qb = p.dOff + t * p.d;
    for (uint c = 0; c < p.d; c++) dq[qb + c] += p.scale * acc[c];
}
