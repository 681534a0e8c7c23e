// Package kernels is Loom's tensor math: a float32 Tensor, every op the
// vision-language models need with its forward and backward side by side,
// blockwise (flash-style) attention with the primitives that ring attention
// composes, and AdamW.
//
// # Tensors
//
// A Tensor is a dense, contiguous, row-major []float32 with a Shape. Ops
// never write into their inputs and always return contiguous tensors
// (Reshape shares the input's Data); there are no strides to reason about,
// which keeps every kernel a plain loop over rows and makes a future device
// backend a matter of replacing those loops. Parameters are tensors made by
// NewParam: they have a Name ("blocks.0.attn.wq") and require gradients.
//
// # Autograd: a tape of paired backward functions
//
// Every op is a method on *Tape. It computes its output immediately and, if
// any input requires a gradient, appends one closure that holds the op's
// backward rule (the llm.c layout: each op's forward and backward functions
// sit next to each other in one file, forward saves what backward needs).
// Tape.Backward(loss) seeds d(loss)=1 and runs the closures in reverse
// order. There is no graph object and no operator overloading: a model is
// ordinary Go code calling tape methods, and its gradients need no
// hand-written chain rule:
//
//	tp := kernels.NewTape()
//	h := tp.GELU(tp.Linear(x, w1, b1))
//	loss := tp.CrossEntropy(tp.Linear(h, w2, b2), targets, kernels.CEOptions{})
//	tp.Backward(loss)         // w1.Grad, b1.Grad, ... now hold gradients
//	opt.Step()
//
// A nil *Tape records nothing (inference). Gradients follow llm.c's rule:
// backward functions ACCUMULATE (+=) into Grad, so parameter gradients add
// up across micro-batches until ZeroGrad; intermediate tensors are fresh on
// every forward pass.
//
// Shape mistakes are programmer errors: ops panic with a *ShapeError that
// names the op and both shapes ("kernels: Matmul: shapes [2 3] and [4 5]:
// inner dimensions 3 and 4 differ"); Catch turns such a panic into an error.
// Data errors (a target class or index out of range) panic with an error
// that names the row.
//
// # Ops
//
// Linear algebra: Matmul/MatmulT (batched, transposes, a shared 2-D weight),
// Linear (nn.Linear layout [out, in]). Elementwise with broadcasting: Add,
// Sub, Mul, Div, Scale, AddScalar. Activations: GELU (tanh), GELUErf, SiLU,
// SwiGLU, ReLU, Tanh, Sigmoid, Exp, Square. Reductions: Sum, Mean, SumAxis,
// MeanAxis. Softmax, LogSoftmax, CrossEntropy (ignore index, per-row
// weights, label smoothing). LayerNorm, RMSNorm. Movement: Reshape, Permute,
// Transpose, Concat, Split, Slice, IndexSelect, Gather, Embedding. Attention
// (blockwise, masks: causal, padding, packed segments, prefix/UniLM) and the
// ring-attention block primitives AttnBlockForward, AttnMerge, AttnDelta,
// AttnBlockBackward. RoPE (explicit and 2-D positions), SinCos2D, PatchEmbed,
// Conv2D, InterpolateBicubic, VectorQuantize, Dropout. AdamW,
// ClipGradNorm, and bf16 conversion for storage (ToBF16, FromBF16).
//
// # References and the backend boundary
//
// Each op's kernel is a generic function over float32 and float64: the
// float32 instantiation is the training path and the float64 one is the
// reference on which the tests run central finite differences. Where the
// training path is a different algorithm (GEMM through
// kernels/internal/gemm, blockwise attention, convolution through im2col),
// a naive implementation is kept in the tree and the tests compare the two.
// Golden files written by PyTorch (testdata/golden/gen.py) pin the numerics
// of every op and of one transformer block.
//
// All math goes through a small set of slice-level kernels (gemm, the
// generic *Fwd/*Bwd functions, the attention block primitives); the Tape
// and Tensor never touch a loop themselves.
//
// # Devices
//
// A tensor lives on the host (the default, and the reference) or on a
// device opened with OpenDevice("gpu"). Device backends implement the
// slice-level kernels behind the interface of kernels/internal/device and
// register themselves when their package is imported; the Vulkan backend
// is kernels/vulkan (GLSL compute shaders, no cgo), and a CUDA one would
// register the same way without changes to the tape, models or trainer.
// Transfers of parameters and results are explicit (Tensor.To, MoveTo,
// HostData, HostGrad, SetData); an op with an operand on a device runs
// there and records a backward rule that runs there. A host operand of
// such an op that wants no gradient (a batch input, a mask, a position
// table) is uploaded for the op, so a model runs on a device once its
// parameters are moved, without knowing it; a host operand that wants a
// gradient, or operands on two devices, panic with a *DeviceError naming
// the op. The host path of every op is unchanged: one nil check decides.
// See docs/gpu.md for what runs on the device and how it is verified.
package kernels
