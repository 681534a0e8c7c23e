// Shared by the attention shaders: the bindings of the operands, the push
// constants, and the mask rule of kernels.AttnMask (global positions and
// segments, so a ring rank can apply it to another rank's key block).
// Layout: q [Sq, H, D], k and v [Sk, H, D], lse and delta [Sq, H], each at
// a word offset in its buffer; mask holds QPos (Sq), KPos (Sk), QSeg (Sq),
// KSeg (Sk) at their offsets, each present when its flag is set.
layout(local_size_x_id = 0) in;
const uint MAXD = 256; // the largest head dimension (checked on the host)
layout(std430, binding = 0) readonly buffer Qb { float q[]; };
layout(std430, binding = 1) readonly buffer Kb { float k[]; };
layout(std430, binding = 2) readonly buffer Vb { float v[]; };
layout(std430, binding = 3) readonly buffer Mb { int mask[]; };
layout(push_constant) uniform P {
    uint sq, sk, h, d;
    float scale;
    uint flags; // 1 causal, 2 QSeg, 4 KSeg
    int prefix;
    uint qOff, kOff, vOff;
    uint qposOff, kposOff, qsegOff, ksegOff;
    uint aOff, bOff, cOff, dOff, eOff; // per shader: the outputs' offsets
} p;

bool allowed(uint i, uint j) {
    int qs = (p.flags & 2u) != 0u ? mask[p.qsegOff + i] : 0;
    int ks = (p.flags & 4u) != 0u ? mask[p.ksegOff + j] : 0;
    if (qs != ks) return false;
    if ((p.flags & 1u) != 0u) {
        int kp = mask[p.kposOff + j];
        return kp <= mask[p.qposOff + i] || kp < p.prefix;
    }
    return true;
}

uint invocation() {
    return (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
}

float score(uint i, uint j, uint hh) {
    uint qb = p.qOff + (i * p.h + hh) * p.d, kb = p.kOff + (j * p.h + hh) * p.d;
    float s = 0.0;
    for (uint c = 0; c < p.d; c++) s += q[qb + c] * k[kb + c];
    return p.scale * s;
}
