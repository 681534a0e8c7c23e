//go:build amd64 && !noasm

#include "textflag.h"

// Constants of expf (fast.go): range reduction and the Cephes polynomial.
DATA ·expConsts+0(SB)/4, $0x3fb8aa3b  // log2(e)
DATA ·expConsts+4(SB)/4, $0x3f318000  // c1 = 0.693359375
DATA ·expConsts+8(SB)/4, $0xb95e8083  // c2 = -2.12194440e-4
DATA ·expConsts+12(SB)/4, $0x39506967 // p0
DATA ·expConsts+16(SB)/4, $0x3ab743ce // p1
DATA ·expConsts+20(SB)/4, $0x3c088908 // p2
DATA ·expConsts+24(SB)/4, $0x3d2aa9c1 // p3
DATA ·expConsts+28(SB)/4, $0x3e2aaaaa // p4
DATA ·expConsts+32(SB)/4, $0x3f000000 // p5
DATA ·expConsts+36(SB)/4, $0x3f800000 // 1
DATA ·expConsts+40(SB)/4, $0xc2ae0000 // -87: below, e^x flushes to 0
DATA ·expConsts+44(SB)/4, $0x42b0c0a5 // 88.3762626647949: above, saturate
DATA ·expConsts+48(SB)/4, $0x3f000000 // 0.5
DATA ·expConsts+52(SB)/4, $0x0000007f // exponent bias 127
DATA ·expConsts+56(SB)/4, $0xff800000 // -Inf
DATA ·expConsts+60(SB)/4, $0x3f4c422a // sqrt(2/pi)
DATA ·expConsts+64(SB)/4, $0x3d372713 // 0.044715
DATA ·expConsts+68(SB)/4, $0x3e095d4f // 3·0.044715
DATA ·expConsts+72(SB)/4, $0x40000000 // 2
DATA ·expConsts+76(SB)/4, $0x41f00000 // 30: clamp of 2u in GELU
GLOBL ·expConsts(SB), RODATA|NOPTR, $80

// EXPCONST loads the constants EXP8 needs into Y7-Y14.
#define EXPCONST \
	VBROADCASTSS ·expConsts+0(SB), Y14; \
	VBROADCASTSS ·expConsts+4(SB), Y13; \
	VBROADCASTSS ·expConsts+8(SB), Y12; \
	VBROADCASTSS ·expConsts+36(SB), Y11; \
	VBROADCASTSS ·expConsts+40(SB), Y10; \
	VBROADCASTSS ·expConsts+44(SB), Y9; \
	VBROADCASTSS ·expConsts+48(SB), Y8; \
	VPBROADCASTD ·expConsts+52(SB), Y7

// EXP8 sets Y3 = exp(Y1) for 8 lanes (flushing below −87 to 0, saturating
// above 88.37); it clobbers Y1, Y2, Y4, Y5.
#define EXP8 \
	VCMPPS  $0x0D, Y10, Y1, Y4; \
	VMAXPS  Y10, Y1, Y1; \
	VMINPS  Y9, Y1, Y1; \
	VMOVAPS Y8, Y2; \
	VFMADD231PS Y14, Y1, Y2; \
	VROUNDPS $1, Y2, Y2; \
	VFNMADD231PS Y13, Y2, Y1; \
	VFNMADD231PS Y12, Y2, Y1; \
	VBROADCASTSS ·expConsts+12(SB), Y3; \
	VBROADCASTSS ·expConsts+16(SB), Y5; \
	VFMADD213PS Y5, Y1, Y3; \
	VBROADCASTSS ·expConsts+20(SB), Y5; \
	VFMADD213PS Y5, Y1, Y3; \
	VBROADCASTSS ·expConsts+24(SB), Y5; \
	VFMADD213PS Y5, Y1, Y3; \
	VBROADCASTSS ·expConsts+28(SB), Y5; \
	VFMADD213PS Y5, Y1, Y3; \
	VBROADCASTSS ·expConsts+32(SB), Y5; \
	VFMADD213PS Y5, Y1, Y3; \
	VMULPS  Y1, Y1, Y5; \
	VFMADD213PS Y1, Y5, Y3; \
	VADDPS  Y11, Y3, Y3; \
	VCVTTPS2DQ Y2, Y2; \
	VPADDD  Y7, Y2, Y2; \
	VPSLLD  $23, Y2, Y2; \
	VMULPS  Y2, Y3, Y3; \
	VANDPS  Y4, Y3, Y3

// GELUER sets Y3 = e = exp(2u) and Y4 = r = 1/(e+1) for x in Y6, with
// u = √(2/π)(x + 0.044715x³) clamped to 15 (tanh(15) is 1 in float32).
// Then ½(1+tanh u) = e·r and 1 − tanh²u = 4·e·r², products without the
// cancellation of 1 − t². Clobbers Y1, Y2, Y5.
#define GELUER \
	VMULPS  Y6, Y6, Y1; \
	VBROADCASTSS ·expConsts+64(SB), Y5; \
	VMULPS  Y5, Y1, Y1; \
	VFMADD213PS Y6, Y6, Y1; \
	VMULPS  Y15, Y1, Y1; \
	VADDPS  Y1, Y1, Y1; \
	VBROADCASTSS ·expConsts+76(SB), Y5; \
	VMINPS  Y5, Y1, Y1; \
	EXP8; \
	VADDPS  Y11, Y3, Y4; \
	VDIVPS  Y4, Y11, Y4

// func geluAVX2(x, y *float32, n int)
//
// y[i] = GELU_tanh(x[i]) = x·e·r for i < n (n a multiple of 8).
TEXT ·geluAVX2(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ n+16(FP), CX
	EXPCONST
	VBROADCASTSS ·expConsts+60(SB), Y15

gloop:
	CMPQ CX, $8
	JL   gdone
	VMOVUPS (SI), Y6
	GELUER
	VMULPS  Y4, Y3, Y3
	VMULPS  Y6, Y3, Y3
	VMOVUPS Y3, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  gloop

gdone:
	VZEROUPPER
	RET

// func geluBwdAVX2(x, dy, dx *float32, n, acc int)
//
// dx[i] += dy[i]·GELU_tanh'(x[i]) for i < n (n a multiple of 8), or
// dx[i] = ... without reading dx when acc is 0, with
// GELU' = ½(1+t) + ½x(1−t²)·u' = e·r + 2x·e·r²·√(2/π)(1+3·0.044715x²).
TEXT ·geluBwdAVX2(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), SI
	MOVQ dy+8(FP), DX
	MOVQ dx+16(FP), DI
	MOVQ n+24(FP), CX
	MOVQ acc+32(FP), R8
	EXPCONST
	VBROADCASTSS ·expConsts+60(SB), Y15

bloop:
	CMPQ CX, $8
	JL   bdone
	VMOVUPS (SI), Y6
	GELUER
	VMULPS  Y4, Y3, Y5             // a = e·r = ½(1+t)
	VMULPS  Y4, Y5, Y2             // e·r² = (1−t²)/4
	VMULPS  Y6, Y6, Y1
	VBROADCASTSS ·expConsts+68(SB), Y3
	VMULPS  Y3, Y1, Y1
	VADDPS  Y11, Y1, Y1            // 1 + 3·0.044715x²
	VMULPS  Y15, Y1, Y1
	VMULPS  Y2, Y1, Y1
	VMULPS  Y6, Y1, Y1
	VADDPS  Y1, Y1, Y1             // ½x(1−t²)·u' = 2x·e·r²·u'
	VADDPS  Y1, Y5, Y5
	VMULPS  (DX), Y5, Y5
	TESTQ   R8, R8
	JZ      bstore
	VADDPS  (DI), Y5, Y5

bstore:
	VMOVUPS Y5, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  bloop

bdone:
	VZEROUPPER
	RET

// func expSubAVX2(x *float32, n int, m float32) float32
//
// x[i] = exp(x[i] − m) for i < n (n a multiple of 8), returns the sum.
TEXT ·expSubAVX2(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS m+16(FP), Y15
	VBROADCASTSS ·expConsts+0(SB), Y14
	VBROADCASTSS ·expConsts+4(SB), Y13
	VBROADCASTSS ·expConsts+8(SB), Y12
	VBROADCASTSS ·expConsts+36(SB), Y11
	VBROADCASTSS ·expConsts+40(SB), Y10
	VBROADCASTSS ·expConsts+44(SB), Y9
	VBROADCASTSS ·expConsts+48(SB), Y8
	VPBROADCASTD ·expConsts+52(SB), Y7
	VXORPS Y0, Y0, Y0
	VXORPS Y6, Y6, Y6

loop:
	CMPQ CX, $8
	JL   done
	VMOVUPS (SI), Y1
	VSUBPS  Y15, Y1, Y1            // x − m
	VCMPPS  $0x0D, Y10, Y1, Y4     // keep mask: x >= -87
	VMAXPS  Y10, Y1, Y1
	VMINPS  Y9, Y1, Y1
	VMOVAPS Y8, Y2
	VFMADD231PS Y14, Y1, Y2        // x·log2e + 0.5
	VROUNDPS $1, Y2, Y2            // n = floor(...)
	VFNMADD231PS Y13, Y2, Y1       // r = x − n·c1
	VFNMADD231PS Y12, Y2, Y1       //     − n·c2
	VBROADCASTSS ·expConsts+12(SB), Y3
	VBROADCASTSS ·expConsts+16(SB), Y5
	VFMADD213PS Y5, Y1, Y3
	VBROADCASTSS ·expConsts+20(SB), Y5
	VFMADD213PS Y5, Y1, Y3
	VBROADCASTSS ·expConsts+24(SB), Y5
	VFMADD213PS Y5, Y1, Y3
	VBROADCASTSS ·expConsts+28(SB), Y5
	VFMADD213PS Y5, Y1, Y3
	VBROADCASTSS ·expConsts+32(SB), Y5
	VFMADD213PS Y5, Y1, Y3
	VMULPS  Y1, Y1, Y5             // r²
	VFMADD213PS Y1, Y5, Y3         // p·r² + r
	VADDPS  Y11, Y3, Y3            // + 1
	VCVTTPS2DQ Y2, Y2
	VPADDD  Y7, Y2, Y2
	VPSLLD  $23, Y2, Y2            // 2^n
	VMULPS  Y2, Y3, Y3
	VANDPS  Y4, Y3, Y3             // flush x < -87 (and −Inf) to 0
	VMOVUPS Y3, (SI)
	VADDPS  Y3, Y0, Y0
	ADDQ    $32, SI
	SUBQ    $8, CX
	JMP     loop

done:
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func maxAVX2(x *float32, n int) float32
//
// Returns max(x[0:n]) (n a multiple of 8; −Inf when n = 0).
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS ·expConsts+56(SB), Y0
	VMOVAPS Y0, Y1

mloop:
	CMPQ CX, $16
	JL   mtail
	VMAXPS (SI), Y0, Y0
	VMAXPS 32(SI), Y1, Y1
	ADDQ $64, SI
	SUBQ $16, CX
	JMP  mloop

mtail:
	CMPQ CX, $8
	JL   mdone
	VMAXPS (SI), Y0, Y0

mdone:
	VMAXPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4E, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xB1, X0, X1
	VMAXPS X1, X0, X0
	VZEROUPPER
	MOVSS X0, ret+16(FP)
	RET

// func dsAVX2(p, dp *float32, n int, delta float32)
//
// dp[i] = p[i]·(dp[i] − delta) for i < n (n a multiple of 8).
TEXT ·dsAVX2(SB), NOSPLIT, $0-28
	MOVQ p+0(FP), SI
	MOVQ dp+8(FP), DI
	MOVQ n+16(FP), CX
	VBROADCASTSS delta+24(FP), Y15

dloop:
	CMPQ CX, $8
	JL   ddone
	VMOVUPS (DI), Y1
	VSUBPS  Y15, Y1, Y1
	VMULPS  (SI), Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  dloop

ddone:
	VZEROUPPER
	RET

// func addVecAVX2(out, a, b *float32, n int)
//
// out[i] = a[i] + b[i] for i < n (n a multiple of 8). out may alias a or b.
TEXT ·addVecAVX2(SB), NOSPLIT, $0-32
	MOVQ out+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX

aloop32:
	CMPQ CX, $32
	JL   aloop8
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VADDPS  (DX), Y0, Y0
	VADDPS  32(DX), Y1, Y1
	VADDPS  64(DX), Y2, Y2
	VADDPS  96(DX), Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ $128, SI
	ADDQ $128, DX
	ADDQ $128, DI
	SUBQ $32, CX
	JMP  aloop32

aloop8:
	CMPQ CX, $8
	JL   adone
	VMOVUPS (SI), Y0
	VADDPS  (DX), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  aloop8

adone:
	VZEROUPPER
	RET

// func lnBwdSumsAVX2(x, dy, w *float32, n int, m float32) (sdn, sdxc float32)
//
// For one LayerNorm row (n a multiple of 8): sdn = Σ dy·w and
// sdxc = Σ dy·w·(x − m).
TEXT ·lnBwdSumsAVX2(SB), NOSPLIT, $0-48
	MOVQ x+0(FP), SI
	MOVQ dy+8(FP), DX
	MOVQ w+16(FP), BX
	MOVQ n+24(FP), CX
	VBROADCASTSS m+32(FP), Y15
	VXORPS Y0, Y0, Y0              // Σ dn (lanes)
	VXORPS Y1, Y1, Y1              // Σ dn·(x−m)
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

sloop16:
	CMPQ CX, $16
	JL   sloop8
	VMOVUPS (DX), Y4
	VMOVUPS 32(DX), Y5
	VMULPS  (BX), Y4, Y4           // dn = dy·w
	VMULPS  32(BX), Y5, Y5
	VMOVUPS (SI), Y6
	VMOVUPS 32(SI), Y7
	VSUBPS  Y15, Y6, Y6            // x − m
	VSUBPS  Y15, Y7, Y7
	VADDPS  Y4, Y0, Y0
	VADDPS  Y5, Y2, Y2
	VFMADD231PS Y4, Y6, Y1
	VFMADD231PS Y5, Y7, Y3
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, BX
	SUBQ $16, CX
	JMP  sloop16

sloop8:
	CMPQ CX, $8
	JL   sdone
	VMOVUPS (DX), Y4
	VMULPS  (BX), Y4, Y4
	VMOVUPS (SI), Y6
	VSUBPS  Y15, Y6, Y6
	VADDPS  Y4, Y0, Y0
	VFMADD231PS Y4, Y6, Y1
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, BX
	SUBQ $8, CX
	JMP  sloop8

sdone:
	VADDPS Y2, Y0, Y0
	VADDPS Y3, Y1, Y1
	VEXTRACTF128 $1, Y0, X4
	VADDPS X4, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VEXTRACTF128 $1, Y1, X5
	VADDPS X5, X1, X1
	VHADDPS X1, X1, X1
	VHADDPS X1, X1, X1
	VZEROUPPER
	MOVSS X0, sdn+40(FP)
	MOVSS X1, sdxc+44(FP)
	RET

// func lnBwdApplyAVX2(x, dy, w, dx, dw, db *float32, n int, m, rs, mdn, mdnn float32)
//
// The second pass of one LayerNorm row's backward (n a multiple of 8):
// with xn = (x − m)·rs and dn = dy·w,
// dx += rs·(dn − mdn − xn·mdnn), dw += dy·xn, db += dy.
TEXT ·lnBwdApplyAVX2(SB), NOSPLIT, $0-72
	MOVQ x+0(FP), SI
	MOVQ dy+8(FP), DX
	MOVQ w+16(FP), BX
	MOVQ dx+24(FP), DI
	MOVQ dw+32(FP), R8
	MOVQ db+40(FP), R9
	MOVQ n+48(FP), CX
	VBROADCASTSS m+56(FP), Y15
	VBROADCASTSS rs+60(FP), Y14
	VBROADCASTSS mdn+64(FP), Y13
	VBROADCASTSS mdnn+68(FP), Y12

ploop:
	CMPQ CX, $8
	JL   pdone
	VMOVUPS (SI), Y0
	VSUBPS  Y15, Y0, Y0
	VMULPS  Y14, Y0, Y0            // xn
	VMOVUPS (DX), Y1               // dy
	VMULPS  (BX), Y1, Y2           // dn
	VSUBPS  Y13, Y2, Y2            // dn − mdn
	VFNMADD231PS Y12, Y0, Y2       //   − xn·mdnn
	VMOVUPS (DI), Y3
	VFMADD231PS Y14, Y2, Y3        // dx += rs·(...)
	VMOVUPS Y3, (DI)
	VMOVUPS (R8), Y4
	VFMADD231PS Y1, Y0, Y4         // dw += dy·xn
	VMOVUPS Y4, (R8)
	VADDPS  (R9), Y1, Y5           // db += dy
	VMOVUPS Y5, (R9)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, BX
	ADDQ $32, DI
	ADDQ $32, R8
	ADDQ $32, R9
	SUBQ $8, CX
	JMP  ploop

pdone:
	VZEROUPPER
	RET

// func adamwAVX2(p, gr, m, v *float32, n int, b1, ob1, b2, ob2, shrink, step float32, sq, eps float64)
//
// The AdamW update of n parameters (n a multiple of 8), bit for bit as
// adamwUpdate (same operation order, no fused multiply-adds, the
// denominator in float64):
// m = b1·m + ob1·g; v = b2·v + (ob2·g)·g;
// p = p·shrink − (step·m) / float32(√v·sq + eps).
TEXT ·adamwAVX2(SB), NOSPLIT, $0-80
	MOVQ p+0(FP), DI
	MOVQ gr+8(FP), SI
	MOVQ m+16(FP), R8
	MOVQ v+24(FP), R9
	MOVQ n+32(FP), CX
	VBROADCASTSS b1+40(FP), Y15
	VBROADCASTSS ob1+44(FP), Y14
	VBROADCASTSS b2+48(FP), Y13
	VBROADCASTSS ob2+52(FP), Y12
	VBROADCASTSS shrink+56(FP), Y9
	VBROADCASTSS step+60(FP), Y8
	VBROADCASTSD sq+64(FP), Y11
	VBROADCASTSD eps+72(FP), Y10

wloop:
	CMPQ CX, $8
	JL   wdone
	VMOVUPS (SI), Y0               // g
	VMULPS  (R8), Y15, Y1          // b1·m
	VMULPS  Y14, Y0, Y2            // ob1·g
	VADDPS  Y2, Y1, Y1             // m
	VMOVUPS Y1, (R8)
	VMULPS  Y12, Y0, Y2            // ob2·g
	VMULPS  Y0, Y2, Y2             //   ·g
	VMULPS  (R9), Y13, Y3          // b2·v
	VADDPS  Y2, Y3, Y3             // v
	VMOVUPS Y3, (R9)
	VCVTPS2PD X3, Y4               // low 4 lanes in float64
	VEXTRACTF128 $1, Y3, X5
	VCVTPS2PD X5, Y5               // high 4 lanes
	VSQRTPD Y4, Y4
	VSQRTPD Y5, Y5
	VMULPD  Y11, Y4, Y4
	VMULPD  Y11, Y5, Y5
	VADDPD  Y10, Y4, Y4
	VADDPD  Y10, Y5, Y5
	VCVTPD2PSY Y4, X4
	VCVTPD2PSY Y5, X5
	VINSERTF128 $1, X5, Y4, Y4     // den (float32)
	VMULPS  Y8, Y1, Y5             // step·m
	VDIVPS  Y4, Y5, Y5             //   / den
	VMULPS  (DI), Y9, Y6           // p·shrink
	VSUBPS  Y5, Y6, Y6
	VMOVUPS Y6, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, R8
	ADDQ $32, R9
	SUBQ $8, CX
	JMP  wloop

wdone:
	VZEROUPPER
	RET

// func lnFwdApplyAVX2(x, w, b, y *float32, n int, m, rs float32)
//
// y = ((x − m)·rs)·w + b for one LayerNorm row (n a multiple of 8), in
// that order and without fused multiply-adds, as the Go loop.
TEXT ·lnFwdApplyAVX2(SB), NOSPLIT, $0-48
	MOVQ x+0(FP), SI
	MOVQ w+8(FP), BX
	MOVQ b+16(FP), DX
	MOVQ y+24(FP), DI
	MOVQ n+32(FP), CX
	VBROADCASTSS m+40(FP), Y15
	VBROADCASTSS rs+44(FP), Y14

yloop:
	CMPQ CX, $8
	JL   ydone
	VMOVUPS (SI), Y0
	VSUBPS  Y15, Y0, Y0
	VMULPS  Y14, Y0, Y0
	VMULPS  (BX), Y0, Y0
	VADDPS  (DX), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, BX
	ADDQ $32, DX
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  yloop

ydone:
	VZEROUPPER
	RET

#define BCAST(imm, R) MOVL imm, AX; MOVD AX, X0; VBROADCASTSS X0, R

// func erfCdfAVX2(x, e, c *float32, n int)
//
// c[i] = Φ(x[i]) for i < n (n a multiple of 8) given e[i] = exp(−x[i]²/2),
// as geluErf32 computes it: t = 1/(1 + p|x/√2|), h = ½·t·poly(t)·e
// (Abramowitz & Stegun 7.1.26), Φ = h where x < 0, else 1 − h.
TEXT ·erfCdfAVX2(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), SI
	MOVQ e+8(FP), DX
	MOVQ c+16(FP), DI
	MOVQ n+24(FP), CX
	BCAST($0x7fffffff, Y15) // |·| mask
	BCAST($0x3f800000, Y14) // 1
	BCAST($0x3ea7ba05, Y13) // p = 0.3275911
	BCAST($0x3f3504f3, Y12) // 1/√2
	BCAST($0x3f87dc22, Y11) // a5
	BCAST($0xbfba00e3, Y10) // a4
	BCAST($0x3fb5f0e3, Y9)  // a3
	BCAST($0xbe91a98e, Y8)  // a2
	BCAST($0x3e827906, Y7)  // a1
	BCAST($0x3f000000, Y6)  // ½

cloop:
	CMPQ CX, $8
	JL   cdone
	VMOVUPS (SI), Y0
	VMULPS  Y12, Y0, Y1       // z = x/√2
	VANDPS  Y15, Y1, Y1       // |z|
	VMULPS  Y13, Y1, Y1       // p|z|
	VADDPS  Y14, Y1, Y1       // 1 + p|z|
	VDIVPS  Y1, Y14, Y2       // t
	VMOVAPS Y11, Y3
	VFMADD213PS Y10, Y2, Y3   // a5·t + a4
	VFMADD213PS Y9, Y2, Y3
	VFMADD213PS Y8, Y2, Y3
	VFMADD213PS Y7, Y2, Y3    // poly
	VMULPS  Y6, Y2, Y2        // ½t
	VMULPS  Y3, Y2, Y2        // ½t·poly
	VMULPS  (DX), Y2, Y2      // h = ½erfc(|z|)
	VSUBPS  Y2, Y14, Y4       // 1 − h
	VBLENDVPS Y0, Y2, Y4, Y4  // h where x's sign bit is set
	VMOVUPS Y4, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  cloop

cdone:
	VZEROUPPER
	RET
