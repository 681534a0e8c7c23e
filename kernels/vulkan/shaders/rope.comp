#version 450
// RoPE as a per-channel rotation: x is [rows, H, D]; channel c of a head
// pairs with partner[c] (itself outside the rotated channels), and with
// r = row mod P (P position rows),
//   forward:  y[e] = A[r,c]·x[e] + B[r,c]·x[e − c + partner[c]]
//   backward: dx[e] += A[r,c]·dy[e] + B[r,partner[c]]·dy[e − c + partner[c]]
// (the transpose: partner is an involution). A and B are cos and ±sin,
// computed on the host exactly as the CPU's RoPE computes them.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer A { float a[]; };
layout(std430, binding = 2) readonly buffer B { float b[]; };
layout(std430, binding = 3) readonly buffer Partner { int partner[]; };
layout(std430, binding = 4) buffer Y { float y[]; };
layout(push_constant) uniform P { uint n, h, d, npos, bwd; } p;
void main() {
    uint e = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (e >= p.n) return;
    uint c = e % p.d;
    uint r = (e / (p.h * p.d)) % p.npos;
    uint pc = uint(partner[c]);
    uint pe = e - c + pc;
    if (p.bwd == 0u) {
        y[e] = a[r * p.d + c] * x[e] + b[r * p.d + c] * x[pe];
    } else {
        y[e] += a[r * p.d + c] * x[e] + b[r * p.d + pc] * x[pe];
    }
}
