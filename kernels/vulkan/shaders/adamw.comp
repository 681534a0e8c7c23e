#version 450
// One AdamW update, the operations of the CPU's adamwUpdate in float32:
// m = b1·m + (1−b1)·g, v = b2·v + (1−b2)·g², p = p·shrink − step·m/(√v·invS + eps).
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer Pp { float prm[]; };
layout(std430, binding = 1) readonly buffer G { float g[]; };
layout(std430, binding = 2) buffer M { float m[]; };
layout(std430, binding = 3) buffer V { float v[]; };
layout(push_constant) uniform P { uint n; float b1, b2, eps, shrink, step_, invS; } p;
void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= p.n) return;
    float gj = g[i];
    float mj = p.b1 * m[i] + (1.0 - p.b1) * gj;
    float vj = p.b2 * v[i] + (1.0 - p.b2) * gj * gj;
    m[i] = mj;
    v[i] = vj;
    prm[i] = prm[i] * p.shrink - p.step_ * mj / (sqrt(vj) * p.invS + p.eps);
}
