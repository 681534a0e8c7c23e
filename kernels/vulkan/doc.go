// Package vulkan is Loom's GPU backend: the kernels of package kernels as
// GLSL compute shaders, run through Vulkan on any device with a compute
// queue (NVIDIA, AMD and Intel drivers, or Mesa's lavapipe on the CPU in
// CI). Importing it registers the device kinds "vulkan" and "gpu":
//
//	import _ "github.com/loomtrain/loom/kernels/vulkan"
//
//	gpu, err := kernels.OpenDevice("gpu")   // or "gpu:N", "vulkan:N"
//	w := kernels.NewParam("w", 64, 32).InitXavier(rng).To(gpu)
//	y := tp.Linear(x.To(gpu), w, nil)       // runs on the device
//	loss.Item()                             // waits for it
//
// The Vulkan calls go through kernels/internal/vk (purego, no cgo). The
// shaders live in shaders/*.comp; the SPIR-V built from them by
// shaders/build.sh (go generate, or make shaders) is committed in spv/ and
// embedded, and TestSPIRVUpToDate fails when a source and its .spv
// disagree (where glslc is installed).
//
// # Execution
//
// Every op records its dispatches into one command buffer with a global
// memory barrier after each; nothing is submitted until the host needs a
// value (Download: HostData, HostGrad, Item, To(Host); or Sync) or the
// descriptor pool of 4096 sets is full, so a training step's forward and
// backward run as one or a few submissions. Pipelines are created on first
// use and cached per specialisation (workgroup size, GEMM tile). Buffers
// are device-local, pooled by power-of-two size class and recycled when Go
// drops their tensor (after the next wait, since recorded work may still
// read them); uploads and downloads go through pooled host-visible
// staging buffers.
//
// # Kernels and their numerics
//
// Every kernel is float32 and is checked against the CPU path (the
// reference) by TestOpsMatchCPU, forward and backward, at small shapes.
// The GEMM is tiled through shared memory (64×64×16 tiles, 4×4 outputs per
// thread, or smaller tiles where the device's limits require). Row
// reductions (softmax, norms, cross-entropy, sum) are shared-memory trees,
// so they sum in a different order than the CPU; results agree within
// about 1e-5 relative. No op uses subgroup operations, so the kernels are
// correct for any subgroup size (lavapipe's is 8).
//
// Every op of package kernels has a device implementation. The movement
// ops (Permute, Concat, Slice, IndexSelect, Gather, Embedding, Im2Col) are
// index maps built on the host and run by one gather shader; their
// backward scatters through segment sums (no atomics). Attention is one
// thread per (query, head) row with an online softmax, forward and
// FlashAttention-2-style backward (dq per query row, dk and dv per key
// row), head dimension at most 256. Dropout's mask and RoPE's cos/sin
// tables are computed on the host by the CPU's code and uploaded.
// docs/gpu.md has the status and what is not done.
package vulkan
