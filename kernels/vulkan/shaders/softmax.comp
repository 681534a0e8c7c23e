#version 450
// Softmax (log = 0) or LogSoftmax (log = 1) of each row of n values; one
// workgroup per row, shared-memory tree reductions (portable across
// subgroup sizes, as ggml's soft_max.comp).
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { uint rows, n, log_; } p;
shared float red[WG];

float reduce(float v, bool isMax) {
    uint t = gl_LocalInvocationID.x;
    red[t] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (t < s) red[t] = isMax ? max(red[t], red[t + s]) : red[t] + red[t + s];
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

void main() {
    uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (row >= p.rows) return;
    uint base = row * p.n, t = gl_LocalInvocationID.x;
    float m = -1.0 / 0.0;
    for (uint j = t; j < p.n; j += WG) m = max(m, x[base + j]);
    m = reduce(m, true);
    float s = 0.0;
    for (uint j = t; j < p.n; j += WG) s += exp(x[base + j] - m);
    s = reduce(s, false);
    if (p.log_ != 0) {
        float lse = m + log(s);
        for (uint j = t; j < p.n; j += WG) y[base + j] = x[base + j] - lse;
    } else {
        float inv = 1.0 / s;
        for (uint j = t; j < p.n; j += WG) y[base + j] = exp(x[base + j] - m) * inv;
    }
}
