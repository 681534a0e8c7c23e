#version 450
// y = f(x) for the activations (op: 0 GELU tanh, 1 GELU erf, 2 SiLU, 3 ReLU,
// 4 Tanh, 5 Sigmoid, 6 Exp, 7 Square, 8 s·x + t).
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { uint n, op; float s, t; } p;

float tanhc(float u) { return tanh(clamp(u, -15.0, 15.0)); }

// Φ(v) through erfc(|v|/√2) = poly(t)·exp(−v²/2) (Abramowitz & Stegun
// 7.1.26), as the CPU's float32 path.
float cdf(float v) {
    float z = abs(v) * 0.7071067811865476;
    float t = 1.0 / (1.0 + 0.3275911 * z);
    float half_ = 0.5 * t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))) * exp(-0.5 * v * v);
    return v >= 0.0 ? 1.0 - half_ : half_;
}

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= p.n) return;
    float v = x[i], r;
    switch (p.op) {
    case 0: r = 0.5 * v * (1.0 + tanhc(0.7978845608028654 * (v + 0.044715 * v * v * v))); break;
    case 1: r = v * cdf(v); break;
    case 2: r = v / (1.0 + exp(-v)); break;
    case 3: r = max(v, 0.0); break;
    case 4: r = tanhc(v); break;
    case 5: r = 1.0 / (1.0 + exp(-v)); break;
    case 6: r = exp(v); break;
    case 7: r = v * v; break;
    default: r = p.s * v + p.t; break;
    }
    y[i] = r;
}
