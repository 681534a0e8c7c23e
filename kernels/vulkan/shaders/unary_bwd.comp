#version 450
// dx += f'(x)·dy for the ops of unary.comp (op 8: dx += s·dy).
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, binding = 2) buffer DX { float dx[]; };
layout(push_constant) uniform P { uint n, op; float s, t; } p;

float tanhc(float u) { return tanh(clamp(u, -15.0, 15.0)); }

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= p.n) return;
    float v = x[i], d;
    switch (p.op) {
    case 0: {
        float th = tanhc(0.7978845608028654 * (v + 0.044715 * v * v * v));
        float du = 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * v * v);
        d = 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * du;
        break;
    }
    case 1: {
        float e = exp(-0.5 * v * v);
        float z = abs(v) * 0.7071067811865476;
        float t = 1.0 / (1.0 + 0.3275911 * z);
        float half_ = 0.5 * t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))) * e;
        float c = v >= 0.0 ? 1.0 - half_ : half_;
        d = c + v * e * 0.3989422804014327;
        break;
    }
    case 2: { float s = 1.0 / (1.0 + exp(-v)); d = s * (1.0 + v * (1.0 - s)); break; }
    case 3: d = v > 0.0 ? 1.0 : 0.0; break;
    case 4: { float th = tanhc(v); d = 1.0 - th * th; break; }
    case 5: { float s = 1.0 / (1.0 + exp(-v)); d = s * (1.0 - s); break; }
    case 6: d = exp(v); break;
    case 7: d = 2.0 * v; break;
    default: d = p.s; break;
    }
    dx[i] += d * dy[i];
}
