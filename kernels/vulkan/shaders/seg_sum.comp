#version 450
// Segment sums, for the non-injective backward of the gathers (Embedding,
// IndexSelect, Gather, Im2Col with overlapping windows) and for SumAxis:
// for j < m,
//   dst[j] = (acc ? dst[j] : 0) + s·Σ_{k = offs[j]}^{offs[j+1]−1} src[list[k]]
// in list order (deterministic: no atomics).
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer Src { float src[]; };
layout(std430, binding = 1) readonly buffer Offs { int offs[]; };
layout(std430, binding = 2) readonly buffer List { int list[]; };
layout(std430, binding = 3) buffer Dst { float dst[]; };
layout(push_constant) uniform P { uint m, acc; float s; } p;
void main() {
    uint j = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (j >= p.m) return;
    float v = 0.0;
    for (int k = offs[j]; k < offs[j + 1]; k++) v += src[list[k]];
    v *= p.s;
    if (p.acc != 0u) v += dst[j];
    dst[j] = v;
}
