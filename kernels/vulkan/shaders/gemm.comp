#version 450
// C = alpha·op(A)·op(B) + beta·C, batched over gl_WorkGroupID.z. Tiled
// through shared memory: each workgroup computes a BM×BN tile of C, staging
// BM×BK of A and BK×BN of B per step; each thread owns a TM×TN register
// block. Tile sizes are specialisation constants (the backend checks
// (BM+BN)·BK·4 bytes against maxComputeSharedMemorySize).
layout(constant_id = 0) const uint BM = 64;
layout(constant_id = 1) const uint BN = 64;
layout(constant_id = 2) const uint BK = 16;
layout(constant_id = 3) const uint TM = 4;
layout(constant_id = 4) const uint TN = 4;
layout(local_size_x_id = 5) in; // (BM/TM)·(BN/TN)

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) buffer C { float c[]; };
layout(push_constant) uniform P {
    uint m, n, k, lda, ldb, ldc;
    uint offA, offB, offC, sA, sB, sC;
    uint transA, transB;
    float alpha, beta;
} p;

shared float As[BK * BM];
shared float Bs[BK * BN];

void main() {
    const uint WG = (BM / TM) * (BN / TN);
    uint tid = gl_LocalInvocationID.x;
    uint tx = tid % (BN / TN), ty = tid / (BN / TN);
    uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
    uint z = gl_WorkGroupID.z;
    uint aBase = p.offA + z * p.sA, bBase = p.offB + z * p.sB, cBase = p.offC + z * p.sC;

    float acc[TM * TN];
    for (uint i = 0; i < TM * TN; i++) acc[i] = 0.0;

    for (uint k0 = 0; k0 < p.k; k0 += BK) {
        for (uint e = tid; e < BM * BK; e += WG) {
            uint i, kk;
            if (p.transA != 0) { kk = e / BM; i = e % BM; } else { i = e / BK; kk = e % BK; }
            uint gi = row0 + i, gk = k0 + kk;
            float v = 0.0;
            if (gi < p.m && gk < p.k) v = p.transA != 0 ? a[aBase + gk * p.lda + gi] : a[aBase + gi * p.lda + gk];
            As[kk * BM + i] = v;
        }
        for (uint e = tid; e < BN * BK; e += WG) {
            uint j, kk;
            if (p.transB != 0) { j = e / BK; kk = e % BK; } else { kk = e / BN; j = e % BN; }
            uint gj = col0 + j, gk = k0 + kk;
            float v = 0.0;
            if (gj < p.n && gk < p.k) v = p.transB != 0 ? b[bBase + gj * p.ldb + gk] : b[bBase + gk * p.ldb + gj];
            Bs[kk * BN + j] = v;
        }
        barrier();
        for (uint kk = 0; kk < BK; kk++) {
            float ar[TM];
            float br[TN];
            for (uint i = 0; i < TM; i++) ar[i] = As[kk * BM + ty * TM + i];
            for (uint j = 0; j < TN; j++) br[j] = Bs[kk * BN + tx * TN + j];
            for (uint i = 0; i < TM; i++)
                for (uint j = 0; j < TN; j++) acc[i * TN + j] += ar[i] * br[j];
        }
        barrier();
    }
    for (uint i = 0; i < TM; i++) {
        uint gi = row0 + ty * TM + i;
        if (gi >= p.m) continue;
        for (uint j = 0; j < TN; j++) {
            uint gj = col0 + tx * TN + j;
            if (gj >= p.n) continue;
            uint idx = cBase + gi * p.ldc + gj;
            float r = p.alpha * acc[i * TN + j];
            c[idx] = p.beta == 0.0 ? r : r + p.beta * c[idx];
        }
    }
}
