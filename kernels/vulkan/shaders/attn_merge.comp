#version 450
// Ring attention's merge (as kernels.AttnMerge): folds the partial (o2,
// lse2) over a disjoint key block into (o, lse) in place, one thread per
// (query row, head): lse' = logaddexp(lse, lse2), o' = o·exp(lse − lse') +
// o2·exp(lse2 − lse'); −Inf (no allowed key) on either side is handled.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer Ob { float o[]; };
layout(std430, binding = 1) buffer Lb { float lse[]; };
layout(std430, binding = 2) readonly buffer O2b { float o2[]; };
layout(std430, binding = 3) readonly buffer L2b { float lse2[]; };
layout(push_constant) uniform P { uint rows, d, oOff, lseOff, o2Off, lse2Off; } p;
void main() {
    uint t = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (t >= p.rows) return;
    float a = lse[p.lseOff + t], b = lse2[p.lse2Off + t];
    if (isinf(b)) return;
    uint ob = p.oOff + t * p.d, o2b = p.o2Off + t * p.d;
    if (isinf(a)) {
        for (uint c = 0; c < p.d; c++) o[ob + c] = o2[o2b + c];
        lse[p.lseOff + t] = b;
        return;
    }
    float mx = max(a, b);
    float n = mx + log(exp(a - mx) + exp(b - mx));
    float fa = exp(a - n), fb = exp(b - n);
    for (uint c = 0; c < p.d; c++) o[ob + c] = o[ob + c] * fa + o2[o2b + c] * fb;
    lse[p.lseOff + t] = n;
}
