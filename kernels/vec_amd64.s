//go:build amd64 && !noasm

#include "textflag.h"

// Constants of expf (fast.go): range reduction and the Cephes polynomial.
DATA vexpc<>+0(SB)/4, $0x3fb8aa3b  // log2(e)
DATA vexpc<>+4(SB)/4, $0x3f318000  // c1 = 0.693359375
DATA vexpc<>+8(SB)/4, $0xb95e8083  // c2 = -2.12194440e-4
DATA vexpc<>+12(SB)/4, $0x39506967 // p0
DATA vexpc<>+16(SB)/4, $0x3ab743ce // p1
DATA vexpc<>+20(SB)/4, $0x3c088908 // p2
DATA vexpc<>+24(SB)/4, $0x3d2aa9c1 // p3
DATA vexpc<>+28(SB)/4, $0x3e2aaaaa // p4
DATA vexpc<>+32(SB)/4, $0x3f000000 // p5
DATA vexpc<>+36(SB)/4, $0x3f800000 // 1
DATA vexpc<>+40(SB)/4, $0xc2ae0000 // -87: below, e^x flushes to 0
DATA vexpc<>+44(SB)/4, $0x42b0c0a5 // 88.3762626647949: above, saturate
DATA vexpc<>+48(SB)/4, $0x3f000000 // 0.5
DATA vexpc<>+52(SB)/4, $0x0000007f // exponent bias 127
DATA vexpc<>+56(SB)/4, $0xff800000 // -Inf
GLOBL vexpc<>(SB), RODATA|NOPTR, $60

// func expSubAVX2(x *float32, n int, m float32) float32
//
// x[i] = exp(x[i] − m) for i < n (n a multiple of 8), returns the sum.
TEXT ·expSubAVX2(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS m+16(FP), Y15
	VBROADCASTSS vexpc<>+0(SB), Y14
	VBROADCASTSS vexpc<>+4(SB), Y13
	VBROADCASTSS vexpc<>+8(SB), Y12
	VBROADCASTSS vexpc<>+36(SB), Y11
	VBROADCASTSS vexpc<>+40(SB), Y10
	VBROADCASTSS vexpc<>+44(SB), Y9
	VBROADCASTSS vexpc<>+48(SB), Y8
	VPBROADCASTD vexpc<>+52(SB), Y7
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
	VBROADCASTSS vexpc<>+12(SB), Y3
	VBROADCASTSS vexpc<>+16(SB), Y5
	VFMADD213PS Y5, Y1, Y3
	VBROADCASTSS vexpc<>+20(SB), Y5
	VFMADD213PS Y5, Y1, Y3
	VBROADCASTSS vexpc<>+24(SB), Y5
	VFMADD213PS Y5, Y1, Y3
	VBROADCASTSS vexpc<>+28(SB), Y5
	VFMADD213PS Y5, Y1, Y3
	VBROADCASTSS vexpc<>+32(SB), Y5
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
	VBROADCASTSS vexpc<>+56(SB), Y0
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
