#version 450
// dg += dout·u·SiLU'(g) (when wantG), du += dout·SiLU(g) (when wantU).
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer G { float g[]; };
layout(std430, binding = 1) readonly buffer U { float u[]; };
layout(std430, binding = 2) readonly buffer DO { float dout[]; };
layout(std430, binding = 3) buffer DG { float dg[]; };
layout(std430, binding = 4) buffer DU { float du[]; };
layout(push_constant) uniform P { uint n, wantG, wantU; } p;
void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= p.n) return;
    float x = g[i], s = 1.0 / (1.0 + exp(-x));
    if (p.wantG != 0) dg[i] += dout[i] * u[i] * s * (1.0 + x * (1.0 - s));
    if (p.wantU != 0) du[i] += dout[i] * x * s;
}
