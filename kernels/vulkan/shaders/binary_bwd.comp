#version 450
// Accumulates the gradient of one operand (which: 0 = a, 1 = b) of a
// broadcast binary op: one thread per element t of that operand sums the
// contributions of every output element that read it (R of them: the
// product of the dimensions it is broadcast along), then adds to dst[t].
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) readonly buffer G { float g[]; };
layout(std430, binding = 3) buffer D { float dst[]; };
layout(push_constant) uniform P {
    uint nt, op, which, nd, R, p0, p1, p2;
    uint dims[6]; uint st[6]; uint so[6]; // output dims; target and other operand strides per output dim
} p;

void main() {
    uint t = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (t >= p.nt) return;
    uint os[6];
    uint s = 1;
    for (int d = int(p.nd) - 1; d >= 0; d--) { os[d] = s; s *= p.dims[d]; }
    uint obase = 0, xbase = 0;
    for (uint d = 0; d < p.nd; d++) {
        if (p.st[d] != 0) {
            uint c = (t / p.st[d]) % p.dims[d];
            obase += c * os[d];
            xbase += c * p.so[d];
        }
    }
    float acc = 0.0;
    for (uint r = 0; r < p.R; r++) {
        uint o = obase, x = xbase, q = r;
        for (int d = int(p.nd) - 1; d >= 0; d--) {
            if (p.st[d] == 0) {
                uint c = q % p.dims[d];
                q /= p.dims[d];
                o += c * os[d];
                x += c * p.so[d];
            }
        }
        float gv = g[o];
        float av = p.which == 0 ? a[t] : a[x];
        float bv = p.which == 0 ? b[x] : b[t];
        if (p.op == 0) acc += gv;
        else if (p.op == 1) acc += p.which == 0 ? gv : -gv;
        else if (p.op == 2) acc += p.which == 0 ? gv * bv : gv * av;
        else acc += p.which == 0 ? gv / bv : -gv * av / (bv * bv);
    }
    dst[t] += acc;
}
