//go:build !novulkan

package main

// The Vulkan backend (kernels/vulkan) is linked in unless the build tag
// novulkan is set: it makes `loom version` list the GPUs, `loom worker
// --device gpu` run on one, and `loom bench device` check one. It loads
// libvulkan.so.1 at run time (purego), which makes the binary dynamically
// linked even with CGO_ENABLED=0; the CPU container image builds with
// -tags novulkan so that its binary stays static (Dockerfile, docs/deploy.md).
import _ "github.com/loomtrain/loom/kernels/vulkan"
