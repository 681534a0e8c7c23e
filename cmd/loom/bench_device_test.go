//go:build !novulkan

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/kernels/vulkan"
)

// TestBenchDevice runs the device check as a user would, on whatever
// Vulkan device this machine has (lavapipe in CI): every op passes, the
// BLIP-2 step's loss matches the host's, and a CPU implementation is
// called one. Without a Vulkan ICD the same command fails saying so.
func TestBenchDevice(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the op suite and timings")
	}
	if _, err := kernels.OpenDevice("gpu"); errors.Is(err, vulkan.ErrNoLoader) || errors.Is(err, vulkan.ErrNoDevice) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI installs lavapipe, but: %v", err)
		}
		t.Skipf("no Vulkan device: %v", err)
	}
	out, err := exec.Command(loomBinary, "bench", "device", "--rounds", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("loom bench device: %v\n%s", err, out)
	}
	n := len(vulkan.Checks())
	for _, want := range []string{"using gpu (vulkan:0", fmt.Sprintf("op suite: %d of %d passed", n, n), "sgemm", "attention forward+backward", "BLIP-2 small", "device check passed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("loom bench device output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "llvmpipe") && !strings.Contains(string(out), "say nothing about GPU speed") {
		t.Errorf("on lavapipe the check does not say its timings mean nothing:\n%s", out)
	}

	cmd := exec.Command(loomBinary, "bench", "device")
	cmd.Env = append(os.Environ(), "VK_ICD_FILENAMES=/nonexistent/icd.json", "VK_DRIVER_FILES=/nonexistent/icd.json")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no Vulkan device") || !strings.Contains(string(out), "ICD") {
		t.Errorf("loom bench device without an ICD: %v\n%s\nwant a failure saying no Vulkan device and naming the ICD", err, out)
	}
}
