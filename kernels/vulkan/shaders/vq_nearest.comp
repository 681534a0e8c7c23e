#version 450
// VQ nearest code: for each row i of z [n, d], the index of the codebook
// row [k, d] with the least ‖e‖² − 2·z·e (ties: the lowest index), as
// kernels.nearestCodes; one thread per row.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer Z { float z[]; };
layout(std430, binding = 1) readonly buffer E { float e[]; };
layout(std430, binding = 2) buffer Idx { int idx[]; };
layout(push_constant) uniform P { uint n, k, d; } p;
void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= p.n) return;
    float best = uintBitsToFloat(0x7f800000u);
    int bi = 0;
    for (uint j = 0; j < p.k; j++) {
        float dot = 0.0, nrm = 0.0;
        for (uint c = 0; c < p.d; c++) {
            float v = e[j * p.d + c];
            nrm += v * v;
            dot += z[i * p.d + c] * v;
        }
        float dist = nrm - 2.0 * dot;
        if (dist < best) {
            best = dist;
            bi = int(j);
        }
    }
    idx[i] = bi;
}
