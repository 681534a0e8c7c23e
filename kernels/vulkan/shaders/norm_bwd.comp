#version 450
// dx of LayerNorm / RMSNorm, one workgroup per row:
// dx += rstd·(dn − mean(dn) − n·mean(dn·n)) (RMSNorm: no mean(dn) term),
// with n the normalised x and dn = dy·w. flags: 1 has w, 4 rms.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 2) readonly buffer M { float mean[]; };
layout(std430, binding = 3) readonly buffer R { float rstd[]; };
layout(std430, binding = 4) readonly buffer DY { float dy[]; };
layout(std430, binding = 5) buffer DX { float dx[]; };
layout(push_constant) uniform P { uint rows, c, flags; } p;
shared float r1[WG];
shared float r2[WG];

void main() {
    uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (row >= p.rows) return;
    uint base = row * p.c, t = gl_LocalInvocationID.x;
    bool rms = (p.flags & 4) != 0;
    float m = rms ? 0.0 : mean[row], rs = rstd[row];
    float sdn = 0.0, sdnn = 0.0;
    for (uint j = t; j < p.c; j += WG) {
        float n = (x[base + j] - m) * rs;
        float dn = dy[base + j];
        if ((p.flags & 1) != 0) dn *= w[j];
        sdn += dn;
        sdnn += dn * n;
    }
    r1[t] = sdn;
    r2[t] = sdnn;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (t < s) { r1[t] += r1[t + s]; r2[t] += r2[t + s]; }
        barrier();
    }
    float mdn = rms ? 0.0 : r1[0] / float(p.c), mdnn = r2[0] / float(p.c);
    for (uint j = t; j < p.c; j += WG) {
        float n = (x[base + j] - m) * rs;
        float dn = dy[base + j];
        if ((p.flags & 1) != 0) dn *= w[j];
        dx[base + j] += rs * (dn - mdn - n * mdnn);
    }
}
