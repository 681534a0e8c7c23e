#version 450
// mode 0: out[0] = s·Σ x (one workgroup); mode 1: x[i] += s·out[0] (the
// backward: x is dx, out is dout).
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(std430, binding = 0) buffer X { float x[]; };
layout(std430, binding = 1) buffer O { float o[]; };
layout(push_constant) uniform P { uint n, mode; float s; } p;
shared float red[WG];
void main() {
    uint t = gl_LocalInvocationID.x;
    if (p.mode == 1) {
        uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + t;
        if (i < p.n) x[i] += p.s * o[0];
        return;
    }
    float acc = 0.0;
    for (uint i = t; i < p.n; i += WG) acc += x[i];
    red[t] = acc;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (t < s) red[t] += red[t + s];
        barrier();
    }
    if (t == 0) o[0] = p.s * red[0];
}
