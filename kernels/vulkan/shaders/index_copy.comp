#version 450
// The movement ops (Permute, Slice, Concat, IndexSelect, Gather, Im2Col)
// and their injective backward: for i < n,
//   dst[dOff + D(i)] = (acc ? dst[dOff + D(i)] : 0) + s·(S(i) < 0 ? 0 : src[sOff + S(i)])
// with S(i) = sidx[i] (or i without one) and D(i) = didx[i] (or i). D must
// be injective (no two threads write one element); a negative source index
// reads as zero (Im2Col's padding).
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer Src { float src[]; };
layout(std430, binding = 1) readonly buffer SIdx { int sidx[]; };
layout(std430, binding = 2) readonly buffer DIdx { int didx[]; };
layout(std430, binding = 3) buffer Dst { float dst[]; };
layout(push_constant) uniform P { uint n, sOff, dOff, flags; float s; } p; // flags: 1 sidx, 2 didx, 4 acc
void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= p.n) return;
    int si = (p.flags & 1u) != 0u ? sidx[i] : int(i);
    uint di = p.dOff + ((p.flags & 2u) != 0u ? uint(didx[i]) : i);
    float v = si < 0 ? 0.0 : p.s * src[p.sOff + uint(si)];
    if ((p.flags & 4u) != 0u) v += dst[di];
    dst[di] = v;
}
