//go:build amd64 && !noasm

#include "textflag.h"

// The attention micro-kernels: C[6×64] = alpha·op(A)[6×k]·B[k×64] (+ C),
// reading A and B where they lie (no packing): A rows (or, transposed, A
// columns) are broadcast one value at a time, B rows are four ZMM loads
// shared by the six rows. 24 ZMM accumulators. d = 64 attention heads make
// every product of the flash-attention tile loop this shape.

#define FMA4(z0, z1, z2, z3, bc) \
	VFMADD231PS Z24, bc, z0; \
	VFMADD231PS Z25, bc, z1; \
	VFMADD231PS Z26, bc, z2; \
	VFMADD231PS Z27, bc, z3

#define LOADB \
	VMOVUPS (BX), Z24; \
	VMOVUPS 64(BX), Z25; \
	VMOVUPS 128(BX), Z26; \
	VMOVUPS 192(BX), Z27

#define ZERO24 \
	VPXORD Z0, Z0, Z0; VPXORD Z1, Z1, Z1; VPXORD Z2, Z2, Z2; VPXORD Z3, Z3, Z3; \
	VPXORD Z4, Z4, Z4; VPXORD Z5, Z5, Z5; VPXORD Z6, Z6, Z6; VPXORD Z7, Z7, Z7; \
	VPXORD Z8, Z8, Z8; VPXORD Z9, Z9, Z9; VPXORD Z10, Z10, Z10; VPXORD Z11, Z11, Z11; \
	VPXORD Z12, Z12, Z12; VPXORD Z13, Z13, Z13; VPXORD Z14, Z14, Z14; VPXORD Z15, Z15, Z15; \
	VPXORD Z16, Z16, Z16; VPXORD Z17, Z17, Z17; VPXORD Z18, Z18, Z18; VPXORD Z19, Z19, Z19; \
	VPXORD Z20, Z20, Z20; VPXORD Z21, Z21, Z21; VPXORD Z22, Z22, Z22; VPXORD Z23, Z23, Z23

#define SCALEROW(z0, z1, z2, z3) \
	VMULPS Z30, z0, z0; VMULPS Z30, z1, z1; VMULPS Z30, z2, z2; VMULPS Z30, z3, z3

#define ADDROW(z0, z1, z2, z3) \
	VADDPS (DI), z0, z0; VADDPS 64(DI), z1, z1; VADDPS 128(DI), z2, z2; VADDPS 192(DI), z3, z3

#define STOREROW(z0, z1, z2, z3) \
	VMOVUPS z0, (DI); VMOVUPS z1, 64(DI); VMOVUPS z2, 128(DI); VMOVUPS z3, 192(DI); \
	ADDQ R12, DI

// STORE6 writes the tile: alpha·acc, plus C when accum != 0.
#define STORE6(accumLabel, endLabel) \
	MOVQ c+40(FP), DI; \
	MOVQ ldc+48(FP), R12; \
	SHLQ $2, R12; \
	VBROADCASTSS alpha+56(FP), Z30; \
	SCALEROW(Z0, Z1, Z2, Z3); SCALEROW(Z4, Z5, Z6, Z7); SCALEROW(Z8, Z9, Z10, Z11); \
	SCALEROW(Z12, Z13, Z14, Z15); SCALEROW(Z16, Z17, Z18, Z19); SCALEROW(Z20, Z21, Z22, Z23); \
	MOVQ accum+64(FP), AX; \
	TESTQ AX, AX; \
	JNE accumLabel; \
	STOREROW(Z0, Z1, Z2, Z3); STOREROW(Z4, Z5, Z6, Z7); STOREROW(Z8, Z9, Z10, Z11); \
	STOREROW(Z12, Z13, Z14, Z15); STOREROW(Z16, Z17, Z18, Z19); STOREROW(Z20, Z21, Z22, Z23); \
	JMP endLabel; \
accumLabel: \
	ADDROW(Z0, Z1, Z2, Z3); STOREROW(Z0, Z1, Z2, Z3); \
	ADDROW(Z4, Z5, Z6, Z7); STOREROW(Z4, Z5, Z6, Z7); \
	ADDROW(Z8, Z9, Z10, Z11); STOREROW(Z8, Z9, Z10, Z11); \
	ADDROW(Z12, Z13, Z14, Z15); STOREROW(Z12, Z13, Z14, Z15); \
	ADDROW(Z16, Z17, Z18, Z19); STOREROW(Z16, Z17, Z18, Z19); \
	ADDROW(Z20, Z21, Z22, Z23); STOREROW(Z20, Z21, Z22, Z23); \
endLabel: \
	VZEROUPPER; \
	RET

// func attnMicroN(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha float32, accum int)
//
// A is row-major: A[i][p] = a[i·lda + p].
TEXT ·attnMicroN(SB), NOSPLIT, $0-72
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R8
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R9
	LEAQ (R8)(R8*4), R10
	MOVQ b+24(FP), BX
	MOVQ ldb+32(FP), R11
	SHLQ $2, R11
	ZERO24
	TESTQ CX, CX
	JE   nstore

nloop:
	LOADB
	VBROADCASTSS (SI), Z28
	FMA4(Z0, Z1, Z2, Z3, Z28)
	VBROADCASTSS (SI)(R8*1), Z29
	FMA4(Z4, Z5, Z6, Z7, Z29)
	VBROADCASTSS (SI)(R8*2), Z28
	FMA4(Z8, Z9, Z10, Z11, Z28)
	VBROADCASTSS (SI)(R9*1), Z29
	FMA4(Z12, Z13, Z14, Z15, Z29)
	VBROADCASTSS (SI)(R8*4), Z28
	FMA4(Z16, Z17, Z18, Z19, Z28)
	VBROADCASTSS (SI)(R10*1), Z29
	FMA4(Z20, Z21, Z22, Z23, Z29)
	ADDQ $4, SI
	ADDQ R11, BX
	DECQ CX
	JNE  nloop

nstore:
	STORE6(naccum, nend)

// func attnMicroT(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha float32, accum int)
//
// A is transposed: A[i][p] = a[p·lda + i].
TEXT ·attnMicroT(SB), NOSPLIT, $0-72
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R8
	SHLQ $2, R8
	MOVQ b+24(FP), BX
	MOVQ ldb+32(FP), R11
	SHLQ $2, R11
	ZERO24
	TESTQ CX, CX
	JE   tstore

tloop:
	LOADB
	VBROADCASTSS (SI), Z28
	FMA4(Z0, Z1, Z2, Z3, Z28)
	VBROADCASTSS 4(SI), Z29
	FMA4(Z4, Z5, Z6, Z7, Z29)
	VBROADCASTSS 8(SI), Z28
	FMA4(Z8, Z9, Z10, Z11, Z28)
	VBROADCASTSS 12(SI), Z29
	FMA4(Z12, Z13, Z14, Z15, Z29)
	VBROADCASTSS 16(SI), Z28
	FMA4(Z16, Z17, Z18, Z19, Z28)
	VBROADCASTSS 20(SI), Z29
	FMA4(Z20, Z21, Z22, Z23, Z29)
	ADDQ R8, SI
	ADDQ R11, BX
	DECQ CX
	JNE  tloop

tstore:
	STORE6(taccum, tend)

// func expSubAVX512(x *float32, n int, m float32) float32
//
// x[i] = exp(x[i] − m) for i < n (n a multiple of 16), returns the sum; the
// 16-lane version of expSubAVX2 (vec_amd64.s), same constants and method.
TEXT ·expSubAVX512(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS m+16(FP), Z15
	VBROADCASTSS ·expConsts+0(SB), Z14
	VBROADCASTSS ·expConsts+4(SB), Z13
	VBROADCASTSS ·expConsts+8(SB), Z12
	VBROADCASTSS ·expConsts+36(SB), Z11
	VBROADCASTSS ·expConsts+40(SB), Z10
	VBROADCASTSS ·expConsts+44(SB), Z9
	VBROADCASTSS ·expConsts+48(SB), Z8
	VPBROADCASTD ·expConsts+52(SB), Z7
	VBROADCASTSS ·expConsts+12(SB), Z16
	VBROADCASTSS ·expConsts+16(SB), Z17
	VBROADCASTSS ·expConsts+20(SB), Z18
	VBROADCASTSS ·expConsts+24(SB), Z19
	VBROADCASTSS ·expConsts+28(SB), Z20
	VBROADCASTSS ·expConsts+32(SB), Z21
	VPXORD Z0, Z0, Z0

x16loop:
	CMPQ CX, $16
	JL   x16done
	VMOVUPS (SI), Z1
	VSUBPS  Z15, Z1, Z1
	VCMPPS  $0x0D, Z10, Z1, K1
	VMAXPS  Z10, Z1, Z1
	VMINPS  Z9, Z1, Z1
	VMOVAPS Z8, Z2
	VFMADD231PS Z14, Z1, Z2
	VRNDSCALEPS $1, Z2, Z2
	VFNMADD231PS Z13, Z2, Z1
	VFNMADD231PS Z12, Z2, Z1
	VMOVAPS Z16, Z3
	VFMADD213PS Z17, Z1, Z3
	VFMADD213PS Z18, Z1, Z3
	VFMADD213PS Z19, Z1, Z3
	VFMADD213PS Z20, Z1, Z3
	VFMADD213PS Z21, Z1, Z3
	VMULPS  Z1, Z1, Z5
	VFMADD213PS Z1, Z5, Z3
	VADDPS  Z11, Z3, Z3
	VCVTTPS2DQ Z2, Z2
	VPADDD  Z7, Z2, Z2
	VPSLLD  $23, Z2, Z2
	VMULPS  Z2, Z3, Z3
	VMOVAPS.Z Z3, K1, Z3
	VMOVUPS Z3, (SI)
	VADDPS  Z3, Z0, Z0
	ADDQ    $64, SI
	SUBQ    $16, CX
	JMP     x16loop

x16done:
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// GELU on 16 lanes: the same operations, in the same order, as the AVX2
// kernels geluAVX2 and geluBwdAVX2 (vec_amd64.s), so the results agree bit
// for bit; the masked move replaces VANDPS with a compare mask.

// GELUCONST16 loads the constants of GELUER16 into Z7-Z24.
#define GELUCONST16 \
	VPBROADCASTD ·expConsts+52(SB), Z7; \
	VBROADCASTSS ·expConsts+48(SB), Z8; \
	VBROADCASTSS ·expConsts+44(SB), Z9; \
	VBROADCASTSS ·expConsts+40(SB), Z10; \
	VBROADCASTSS ·expConsts+36(SB), Z11; \
	VBROADCASTSS ·expConsts+8(SB), Z12; \
	VBROADCASTSS ·expConsts+4(SB), Z13; \
	VBROADCASTSS ·expConsts+0(SB), Z14; \
	VBROADCASTSS ·expConsts+60(SB), Z15; \
	VBROADCASTSS ·expConsts+12(SB), Z16; \
	VBROADCASTSS ·expConsts+16(SB), Z17; \
	VBROADCASTSS ·expConsts+20(SB), Z18; \
	VBROADCASTSS ·expConsts+24(SB), Z19; \
	VBROADCASTSS ·expConsts+28(SB), Z20; \
	VBROADCASTSS ·expConsts+32(SB), Z21; \
	VBROADCASTSS ·expConsts+64(SB), Z22; \
	VBROADCASTSS ·expConsts+76(SB), Z23; \
	VBROADCASTSS ·expConsts+68(SB), Z24

// GELUER16 sets Z3 = e = exp(2u) and Z4 = r = 1/(e+1) for x in Z6 (see
// GELUER in vec_amd64.s). Clobbers Z1, Z2, Z5, K1.
#define GELUER16 \
	VMULPS  Z6, Z6, Z1; \
	VMULPS  Z22, Z1, Z1; \
	VFMADD213PS Z6, Z6, Z1; \
	VMULPS  Z15, Z1, Z1; \
	VADDPS  Z1, Z1, Z1; \
	VMINPS  Z23, Z1, Z1; \
	VCMPPS  $0x0D, Z10, Z1, K1; \
	VMAXPS  Z10, Z1, Z1; \
	VMINPS  Z9, Z1, Z1; \
	VMOVAPS Z8, Z2; \
	VFMADD231PS Z14, Z1, Z2; \
	VRNDSCALEPS $1, Z2, Z2; \
	VFNMADD231PS Z13, Z2, Z1; \
	VFNMADD231PS Z12, Z2, Z1; \
	VMOVAPS Z16, Z3; \
	VFMADD213PS Z17, Z1, Z3; \
	VFMADD213PS Z18, Z1, Z3; \
	VFMADD213PS Z19, Z1, Z3; \
	VFMADD213PS Z20, Z1, Z3; \
	VFMADD213PS Z21, Z1, Z3; \
	VMULPS  Z1, Z1, Z5; \
	VFMADD213PS Z1, Z5, Z3; \
	VADDPS  Z11, Z3, Z3; \
	VCVTTPS2DQ Z2, Z2; \
	VPADDD  Z7, Z2, Z2; \
	VPSLLD  $23, Z2, Z2; \
	VMULPS  Z2, Z3, Z3; \
	VMOVAPS.Z Z3, K1, Z3; \
	VADDPS  Z11, Z3, Z4; \
	VDIVPS  Z4, Z11, Z4

// func geluAVX512(x, y *float32, n int)
//
// geluAVX2 on 16 lanes (n a multiple of 16).
TEXT ·geluAVX512(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ n+16(FP), CX
	GELUCONST16

g16loop:
	CMPQ CX, $16
	JL   g16done
	VMOVUPS (SI), Z6
	GELUER16
	VMULPS  Z4, Z3, Z3
	VMULPS  Z6, Z3, Z3
	VMOVUPS Z3, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP  g16loop

g16done:
	VZEROUPPER
	RET

// func geluBwdAVX512(x, dy, dx *float32, n, acc int)
//
// geluBwdAVX2 on 16 lanes (n a multiple of 16).
TEXT ·geluBwdAVX512(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), SI
	MOVQ dy+8(FP), DX
	MOVQ dx+16(FP), DI
	MOVQ n+24(FP), CX
	MOVQ acc+32(FP), R8
	GELUCONST16

b16loop:
	CMPQ CX, $16
	JL   b16done
	VMOVUPS (SI), Z6
	GELUER16
	VMULPS  Z4, Z3, Z5             // a = e·r = ½(1+t)
	VMULPS  Z4, Z5, Z2             // e·r² = (1−t²)/4
	VMULPS  Z6, Z6, Z1
	VMULPS  Z24, Z1, Z1
	VADDPS  Z11, Z1, Z1            // 1 + 3·0.044715x²
	VMULPS  Z15, Z1, Z1
	VMULPS  Z2, Z1, Z1
	VMULPS  Z6, Z1, Z1
	VADDPS  Z1, Z1, Z1
	VADDPS  Z1, Z5, Z5
	VMULPS  (DX), Z5, Z5
	TESTQ   R8, R8
	JZ      b16store
	VADDPS  (DI), Z5, Z5

b16store:
	VMOVUPS Z5, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	SUBQ $16, CX
	JMP  b16loop

b16done:
	VZEROUPPER
	RET
