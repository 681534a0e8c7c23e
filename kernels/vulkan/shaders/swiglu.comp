#version 450
// out = SiLU(g)·u.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer G { float g[]; };
layout(std430, binding = 1) readonly buffer U { float u[]; };
layout(std430, binding = 2) buffer O { float o[]; };
layout(push_constant) uniform P { uint n; } p;
void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= p.n) return;
    float x = g[i];
    o[i] = x / (1.0 + exp(-x)) * u[i];
}
