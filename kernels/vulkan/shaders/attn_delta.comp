#version 450
// delta[i,h] = Σ_d do[i,h,d]·o[i,h,d], the row term of the attention
// backward (as kernels.AttnDelta); o is the final output.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer Ob { float o[]; };
layout(std430, binding = 1) readonly buffer DOb { float dout[]; };
layout(std430, binding = 2) buffer Db { float delta[]; };
layout(push_constant) uniform P { uint rows, d, oOff, doOff, deltaOff; } p;
void main() {
    uint t = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (t >= p.rows) return;
    float s = 0.0;
    for (uint c = 0; c < p.d; c++) s += o[p.oOff + t * p.d + c] * dout[p.doOff + t * p.d + c];
    delta[p.deltaOff + t] = s;
}
