#version 450
#extension GL_GOOGLE_include_directive : require
// Attention forward over one key block, one thread per (query row, head):
// online softmax over the allowed keys, o = softmax(scale·q·kᵀ)·v and lse
// = log-sum-exp of the scores; a row with no allowed key gets o = 0 and
// lse = −Inf (as kernels.AttnBlockForward). Outputs: o at aOff, lse at bOff.
#include "attn_common.glsl"
layout(std430, binding = 4) buffer Ob { float o[]; };
layout(std430, binding = 5) buffer Lb { float lse[]; };
void main() {
    uint t = invocation();
    if (t >= p.sq * p.h) return;
    uint i = t / p.h, hh = t % p.h;
    float acc[MAXD];
    for (uint c = 0; c < p.d; c++) acc[c] = 0.0;
    float m = uintBitsToFloat(0xff800000u), l = 0.0;
    for (uint j = 0; j < p.sk; j++) {
        if (!allowed(i, j)) continue;
        float s = score(i, j, hh);
        uint vb = p.vOff + (j * p.h + hh) * p.d;
        if (s > m) {
            float cf = l == 0.0 ? 0.0 : exp(m - s);
            l = l * cf + 1.0;
            for (uint c = 0; c < p.d; c++) acc[c] = acc[c] * cf + v[vb + c];
            m = s;
        } else {
            float e = exp(s - m);
            l += e;
            for (uint c = 0; c < p.d; c++) acc[c] += e * v[vb + c];
        }
    }
    uint ob = p.aOff + t * p.d;
    if (l == 0.0) {
        for (uint c = 0; c < p.d; c++) o[ob + c] = 0.0;
        lse[p.bOff + t] = uintBitsToFloat(0xff800000u);
        return;
    }
    float inv = 1.0 / l;
    for (uint c = 0; c < p.d; c++) o[ob + c] = acc[c] * inv;
    lse[p.bOff + t] = m + log(l);
}
