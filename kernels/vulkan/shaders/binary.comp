#version 450
// out = a ∘ b with NumPy broadcasting: sa/sb are a's and b's element
// strides per output dimension (0 where broadcast).
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) buffer O { float o[]; };
layout(push_constant) uniform P { uint n, op, nd, pad; uint dims[6]; uint sa[6]; uint sb[6]; } p;

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= p.n) return;
    uint ia = 0, ib = 0, r = i;
    for (int d = int(p.nd) - 1; d >= 0; d--) {
        uint c = r % p.dims[d];
        r /= p.dims[d];
        ia += c * p.sa[d];
        ib += c * p.sb[d];
    }
    float x = a[ia], y = b[ib], z;
    if (p.op == 0) z = x + y;
    else if (p.op == 1) z = x - y;
    else if (p.op == 2) z = x * y;
    else z = x / y;
    o[i] = z;
}
