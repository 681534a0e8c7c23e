#version 450
// dw += Σ_rows dy·n and db += Σ_rows dy for LayerNorm / RMSNorm, one thread
// per column. flags: 1 want dw, 2 want db, 4 rms.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer M { float mean[]; };
layout(std430, binding = 2) readonly buffer R { float rstd[]; };
layout(std430, binding = 3) readonly buffer DY { float dy[]; };
layout(std430, binding = 4) buffer DW { float dw[]; };
layout(std430, binding = 5) buffer DB { float db[]; };
layout(push_constant) uniform P { uint rows, c, flags; } p;

void main() {
    uint j = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (j >= p.c) return;
    bool rms = (p.flags & 4) != 0;
    float sw = 0.0, sb = 0.0;
    for (uint r = 0; r < p.rows; r++) {
        float g = dy[r * p.c + j];
        float m = rms ? 0.0 : mean[r];
        sw += g * (x[r * p.c + j] - m) * rstd[r];
        sb += g;
    }
    if ((p.flags & 1) != 0) dw[j] += sw;
    if ((p.flags & 2) != 0) db[j] += sb;
}
