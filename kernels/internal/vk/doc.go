// Package vk is the compute-only subset of Vulkan that Loom's GPU backend
// needs, called without cgo: libvulkan.so.1 is opened with purego's Dlopen
// and every entry point is fetched through vkGetInstanceProcAddr (instance
// level) or vkGetDeviceProcAddr (device level) and called with
// purego.SyscallN.
//
// It covers an instance with no extensions, the choice of a physical device
// and of a queue family with compute, one queue, storage buffers with their
// own memory, shader modules from SPIR-V, compute pipelines with
// specialisation constants and push constants, descriptor pools and sets of
// storage buffers, command pools and buffers (dispatch, copy, fill, global
// memory barriers) and fences. Nothing graphic (no surfaces, images or
// render passes) and no extension is used.
//
// Structs are declared in Go with the C layout of vulkan_core.h on 64-bit
// targets (layout_test.go pins their sizes against the C headers'
// sizeof). Only pointers to structs cross into the driver, never structs by
// value; pointers inside a struct are pinned with runtime.Pinner for the
// duration of the call, and the driver keeps none of them.
//
// Every failing call returns an *Error naming the Vulkan function and its
// VkResult ("vulkan: vkAllocateMemory: VK_ERROR_OUT_OF_DEVICE_MEMORY").
// When no loader (or no device) is present, Load and Open return
// ErrNoLoader (or ErrNoDevice) wrapped with the reason, so callers and
// tests can skip cleanly.
//
// A Context is not safe for concurrent use; the backend above serialises
// access to it.
package vk
