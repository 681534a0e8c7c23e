#version 450
#extension GL_GOOGLE_include_directive : require
// Attention backward, dk and dv part, one thread per (key row, head): dv
// += Σ_i p_i·do_i and dk += scale·Σ_i ds_i·q_i (accumulated), with p and
// ds as in attn_bwd_q. do at aOff, lse at bOff, delta at cOff, dk at dOff,
// dv at eOff.
#include "attn_common.glsl"
layout(std430, binding = 4) readonly buffer DOb { float dout[]; };
layout(std430, binding = 5) readonly buffer Lb { float lse[]; };
layout(std430, binding = 6) readonly buffer Db { float delta[]; };
layout(std430, binding = 7) buffer DKb { float dk[]; };
layout(std430, binding = 8) buffer DVb { float dv[]; };
void main() {
    uint t = invocation();
    if (t >= p.sk * p.h) return;
    uint j = t / p.h, hh = t % p.h;
    float ak[MAXD], av[MAXD];
    for (uint c = 0; c < p.d; c++) { ak[c] = 0.0; av[c] = 0.0; }
    uint vb = p.vOff + (j * p.h + hh) * p.d;
    for (uint i = 0; i < p.sq; i++) {
        if (!allowed(i, j)) continue;
        uint r = i * p.h + hh;
        float L = lse[p.bOff + r];
        if (isinf(L)) continue;
        float pr = exp(score(i, j, hh) - L);
        uint db = p.aOff + r * p.d, qb = p.qOff + r * p.d;
        float dp = 0.0;
        for (uint c = 0; c < p.d; c++) dp += dout[db + c] * v[vb + c];
        float ds = pr * (dp - delta[p.cOff + r]);
        for (uint c = 0; c < p.d; c++) {
            av[c] += pr * dout[db + c];
            ak[c] += ds * q[qb + c];
        }
    }
    uint kb = t * p.d;
    for (uint c = 0; c < p.d; c++) {
        dk[p.dOff + kb + c] += p.scale * ak[c];
        dv[p.eOff + kb + c] += av[c];
    }
}
