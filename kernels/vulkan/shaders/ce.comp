#version 450
// Cross-entropy from the log-softmax. Forward (mode 0, one workgroup):
// loss[0] = invNorm·Σ_rows w·(−(1−ε)·logp[t] − ε/V·Σ_j logp). Backward
// (mode 1, one thread per logit): dlogits += w·dloss[0]·invNorm·(p − q),
// q = ε/V + (1−ε)·[j = t]. Ignored rows have weight 0.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(std430, binding = 0) readonly buffer L { float logp[]; };
layout(std430, binding = 1) readonly buffer T { int tgt[]; };
layout(std430, binding = 2) readonly buffer Wt { float wt[]; };
layout(std430, binding = 3) buffer S { float scal[]; }; // loss (mode 0) or dloss (mode 1)
layout(std430, binding = 4) buffer D { float dlogits[]; };
layout(push_constant) uniform P { uint rows, v, mode; float eps, invNorm; } p;
shared float red[WG];

void main() {
    uint t = gl_LocalInvocationID.x;
    if (p.mode == 0) {
        float acc = 0.0;
        for (uint r = t; r < p.rows; r += WG) {
            float w = wt[r];
            if (w == 0.0) continue;
            uint base = r * p.v;
            float l = -(1.0 - p.eps) * logp[base + uint(tgt[r])];
            if (p.eps != 0.0) {
                float s = 0.0;
                for (uint j = 0; j < p.v; j++) s += logp[base + j];
                l -= p.eps / float(p.v) * s;
            }
            acc += w * l;
        }
        red[t] = acc;
        barrier();
        for (uint s = WG / 2; s > 0; s >>= 1) {
            if (t < s) red[t] += red[t + s];
            barrier();
        }
        if (t == 0) scal[0] = red[0] * p.invNorm;
        return;
    }
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + t;
    if (i >= p.rows * p.v) return;
    uint r = i / p.v, j = i % p.v;
    float w = wt[r];
    if (w == 0.0) return;
    float c = w * scal[0] * p.invNorm;
    float q = p.eps / float(p.v);
    if (int(j) == tgt[r]) q += 1.0 - p.eps;
    dlogits[i] += c * (exp(logp[i]) - q);
}
