// Package device is the seam between package kernels and its device
// backends: the Backend interface a backend implements (buffers, transfers
// and the slice-level kernels the tape calls), the op codes those kernels
// take, and the registry through which a backend package makes itself
// available (as database/sql drivers do). Package kernels imports it; a
// backend (kernels/vulkan today, a CUDA driver-API one later) imports it and
// registers in init. Nothing here depends on a concrete API.
//
// Every Backend method records work and returns at once; the work runs in
// order, and Download (or Sync) waits for everything recorded before it.
// Buffers hold 32-bit words (float32, or int32 for indices). Backward
// kernels ACCUMULATE (+=) into their gradient buffers, as the CPU rules do.
// A failure of the device is a panic with an error that names the call; a
// Backend is safe for use by one goroutine at a time per tape, and its
// implementation serialises access to the device.
package device

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Buffer is device memory of Len() 32-bit words. Backends free it when it
// becomes unreachable.
type Buffer interface{ Len() int }

// View is a buffer from word offset Off.
type View struct {
	Buf Buffer
	Off int
}

// Gemm is C = Alpha·op(A)·op(B) + Beta·C for Batch row-major matrices:
// op(A) is M×K, op(B) K×N, C M×N, with leading dimensions LDA, LDB, LDC and
// batch strides SA, SB, SC (words; 0 repeats one matrix for every batch).
type Gemm struct {
	TransA, TransB bool
	M, N, K        int
	Alpha, Beta    float32
	A, B, C        View
	LDA, LDB, LDC  int
	Batch          int
	SA, SB, SC     int
}

// BinaryOp is an elementwise binary op.
type BinaryOp int

// The binary ops.
const (
	Add BinaryOp = iota
	Sub
	Mul
	Div
)

// MaxDims is the most dimensions a broadcast may have.
const MaxDims = 6

// Bcast describes NumPy broadcasting of a and b onto Out: SA and SB are the
// element strides of a and b per output dimension (0 where broadcast).
type Bcast struct {
	Out    []int
	SA, SB []int
}

// UnaryOp is an elementwise unary op.
type UnaryOp int

// The unary ops. ScaleShift is y = S·x + T.
const (
	GELU UnaryOp = iota // tanh form
	GELUErf
	SiLU
	ReLU
	Tanh
	Sigmoid
	Exp
	Square
	ScaleShift
)

// NormArgs are the buffers of LayerNorm (RMS false) or RMSNorm (RMS true)
// over Rows rows of C values. W and B may have a nil Buf (no affine part;
// RMSNorm has no B); Mean is unused by RMSNorm.
type NormArgs struct {
	Rows, C int
	RMS     bool
	Eps     float32
	X, W, B Buffer
	Y       Buffer
	Mean    Buffer
	Rstd    Buffer
	DY      Buffer // backward
	DX      Buffer // backward; nil: not wanted
	DW, DB  Buffer // backward; nil: not wanted
}

// CEArgs are the buffers of cross-entropy over Rows rows of V logits: LogP
// is the log-softmax, Targets Rows int32 class indices, Weights Rows row
// weights (0 for ignored rows), Eps the label smoothing, InvNorm 1/the
// normaliser.
type CEArgs struct {
	Rows, V        int
	LogP, Targets  Buffer
	Weights        Buffer
	Eps, InvNorm   float32
	Loss           Buffer // forward: 1 word
	DLoss, DLogits Buffer // backward: DLoss 1 word, DLogits += ...
}

// AttnArgs are the buffers of scaled-dot-product attention of one query
// block Q [Sq, H, D] over one key block K, V [Sk, H, D] (views at word
// offsets), the block primitive of both the Attention op and ring
// attention. The mask is kernels.AttnMask's, in global terms: Mask holds
// int32 words, with QPos (Sq), KPos (Sk), QSeg (Sq) and KSeg (Sk) at the
// given offsets (−1: absent; QPos and KPos are required when Causal, an
// absent segment list is segment 0). Prefix keys are visible to every
// query of their segment when Causal. The forward overwrites O and LSE
// [Sq, H] (−Inf where a query sees no key); the backward ACCUMULATES into
// DQ, DK and DV, from DO, the final LSE, and Delta [Sq, H], which it
// overwrites with Σ_d DO·O first.
type AttnArgs struct {
	Sq, Sk, H, D           int
	Scale                  float32
	Causal                 bool
	Prefix                 int32
	Q, K, V, O             View
	LSE, Delta             View
	Mask                   Buffer
	QPos, KPos, QSeg, KSeg int
	DO                     View // backward
	DQ, DK, DV             View // backward (accumulated)
}

// MaxHeadDim is the largest head dimension the attention kernels take.
const MaxHeadDim = 256

// AdamW are the arguments of one AdamW update of N parameters (the CPU
// update's scalars, precomputed).
type AdamW struct {
	N                      int
	P, G, M, V             Buffer
	B1, B2, Eps            float32
	Shrink, StepSize, InvS float32 // 1 − lr·wd (or 1), lr/bc1, 1/√bc2
}

// Backend is one device.
type Backend interface {
	// Name says which device this is ("vulkan:0 llvmpipe (LLVM 15.0.6, 256 bits), CPU").
	Name() string
	// Alloc returns a zeroed buffer of n words.
	Alloc(n int) Buffer
	// Upload copies src into dst from word 0; UploadInt32 likewise for indices.
	Upload(dst Buffer, src []float32)
	UploadInt32(dst Buffer, src []int32)
	// Download waits for the recorded work and copies src into dst.
	Download(dst []float32, src View)
	// Sync waits for the recorded work.
	Sync() error

	// Fill sets n words from dst.Off to v; Copy copies n words.
	Fill(dst View, n int, v float32)
	Copy(dst, src View, n int)
	// Axpy sets y += a·x for n words.
	Axpy(n int, a float32, x, y View)

	Gemm(g Gemm)
	Binary(op BinaryOp, bc Bcast, a, b, out Buffer)
	// BinaryBwd accumulates the gradient of operand which (0: a, 1: b)
	// into dst, from dout.
	BinaryBwd(op BinaryOp, bc Bcast, which int, a, b, dout, dst Buffer)
	Unary(op UnaryOp, n int, s, t float32, x, y Buffer)
	UnaryBwd(op UnaryOp, n int, s float32, x, dy, dx Buffer)
	SwiGLU(n int, g, u, out Buffer)
	SwiGLUBwd(n int, g, u, dout, dg, du Buffer) // dg or du may be nil
	// Softmax (log: LogSoftmax) over rows of n; SoftmaxBwd from the output y.
	Softmax(rows, n int, log bool, x, y Buffer)
	SoftmaxBwd(rows, n int, log bool, y, dy, dx Buffer)
	Norm(a NormArgs)
	NormBwd(a NormArgs)
	CrossEntropy(a CEArgs)
	// Sum sets out[0] = s·Σx over n words; SumBwd sets dx[i] += s·dout[0].
	Sum(n int, s float32, x, out Buffer)
	SumBwd(n int, s float32, dout, dx Buffer)
	Attention(a AttnArgs)
	AttentionBwd(a AttnArgs)
	// IndexCopy is the movement ops' kernel: for i < n,
	// dst[D(i)] = (acc ? dst[D(i)] : 0) + s·src[S(i)], where S(i) =
	// sidx[i] (i when sidx is nil; a negative index reads 0) and D(i) =
	// didx[i] (i when nil), both from the views' offsets. D must be
	// injective.
	IndexCopy(n int, s float32, acc bool, src View, sidx, didx Buffer, dst View)
	// SegSum sets, for j < m, dst[j] = (acc ? dst[j] : 0) +
	// s·Σ_{k=offs[j]}^{offs[j+1]−1} src[list[k]] (offs has m+1 entries):
	// the non-injective scatter-add, without atomics.
	SegSum(m int, s float32, acc bool, src, offs, list, dst Buffer)
	// RoPE rotates x [rows, H, D] (n words) pairwise: y[e] = A[r,c]·x[e] +
	// B[r,c]·x[e−c+partner[c]] with c the channel, r = row mod npos, A and
	// B [npos, D]; bwd accumulates the transpose into y.
	RoPE(n, h, d, npos int, bwd bool, x, a, b, partner, y Buffer)
	// AttnMerge folds the partial attention (o2, lse2) of Rows = Sq·H
	// rows of D over a disjoint key block into (o, lse), in place (ring
	// attention's merge).
	AttnMerge(rows, d int, o, lse, o2, lse2 View)
	// NearestCode sets idx[i] (int32) to the row of codebook [k, d]
	// nearest to row i of z [n, d] (least ‖e‖² − 2·z·e, lowest index on ties).
	NearestCode(n, k, d int, z, codebook, idx Buffer)
	AdamWStep(a AdamW)
}

// Opener opens device number ordinal of a backend (ordinal < 0: the
// backend's preferred device).
type Opener func(ordinal int) (Backend, error)

var (
	mu      sync.Mutex
	openers = map[string]Opener{}
	listers = map[string]func() ([]string, error){}
)

// Register makes a backend available under kind ("vulkan", "gpu", "cuda").
// list, which may be nil, describes the devices it can open.
func Register(kind string, open Opener, list func() ([]string, error)) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := openers[kind]; dup {
		panic("kernels/device: backend " + kind + " registered twice")
	}
	openers[kind] = open
	if list != nil {
		listers[kind] = list
	}
}

// Lookup returns the opener registered under kind.
func Lookup(kind string) (Opener, bool) {
	mu.Lock()
	defer mu.Unlock()
	o, ok := openers[kind]
	return o, ok
}

// Kinds lists the registered backend kinds, sorted.
func Kinds() []string {
	mu.Lock()
	defer mu.Unlock()
	var ks []string
	for k := range openers {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ErrNoLister is List's error for a kind registered without a lister (an
// alias, such as "gpu" for "vulkan").
var ErrNoLister = errors.New("kernels/device: backend lists no devices")

// List describes the devices of backend kind.
func List(kind string) ([]string, error) {
	mu.Lock()
	l := listers[kind]
	mu.Unlock()
	if l == nil {
		return nil, fmt.Errorf("%w: backend %q", ErrNoLister, kind)
	}
	return l()
}
