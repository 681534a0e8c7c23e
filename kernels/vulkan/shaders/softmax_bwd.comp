#version 450
// From the output y: Softmax dx += y·(dy − Σ dy·y); LogSoftmax
// dx += dy − exp(y)·Σ dy.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(std430, binding = 0) readonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, binding = 2) buffer DX { float dx[]; };
layout(push_constant) uniform P { uint rows, n, log_; } p;
shared float red[WG];

void main() {
    uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (row >= p.rows) return;
    uint base = row * p.n, t = gl_LocalInvocationID.x;
    float s = 0.0;
    for (uint j = t; j < p.n; j += WG) s += p.log_ != 0 ? dy[base + j] : dy[base + j] * y[base + j];
    red[t] = s;
    barrier();
    for (uint k = WG / 2; k > 0; k >>= 1) {
        if (t < k) red[t] += red[t + k];
        barrier();
    }
    s = red[0];
    for (uint j = t; j < p.n; j += WG) {
        uint i = base + j;
        dx[i] += p.log_ != 0 ? dy[i] - exp(y[i]) * s : y[i] * (dy[i] - s);
    }
}
