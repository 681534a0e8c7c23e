#version 450
// LayerNorm (rms = 0: mean, then the centred variance) or RMSNorm of each
// row of c values, one workgroup per row; saves mean and rstd per row.
// flags: 1 has w, 2 has b, 4 rms.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 2) readonly buffer Bb { float b[]; };
layout(std430, binding = 3) buffer Y { float y[]; };
layout(std430, binding = 4) buffer M { float mean[]; };
layout(std430, binding = 5) buffer R { float rstd[]; };
layout(push_constant) uniform P { uint rows, c, flags; float eps; } p;
shared float red[WG];

float sum(float v) {
    uint t = gl_LocalInvocationID.x;
    red[t] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (t < s) red[t] += red[t + s];
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

void main() {
    uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (row >= p.rows) return;
    uint base = row * p.c, t = gl_LocalInvocationID.x;
    bool rms = (p.flags & 4) != 0;
    float m = 0.0;
    if (!rms) {
        float s = 0.0;
        for (uint j = t; j < p.c; j += WG) s += x[base + j];
        m = sum(s) / float(p.c);
    }
    float q = 0.0;
    for (uint j = t; j < p.c; j += WG) { float d = x[base + j] - m; q += d * d; }
    float rs = inversesqrt(sum(q) / float(p.c) + p.eps);
    for (uint j = t; j < p.c; j += WG) {
        float v = (x[base + j] - m) * rs;
        if ((p.flags & 1) != 0) v *= w[j];
        if ((p.flags & 2) != 0) v += b[j];
        y[base + j] = v;
    }
    if (t == 0) { mean[row] = m; rstd[row] = rs; }
}
