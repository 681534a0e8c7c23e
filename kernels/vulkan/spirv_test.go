package vulkan

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestSPIRVUpToDate rebuilds every shader with shaders/build.sh into a
// temporary directory and compares the result with the committed .spv
// files, so a shader edited without `make shaders` fails here.
func TestSPIRVUpToDate(t *testing.T) {
	if _, err := exec.LookPath("glslc"); err != nil {
		t.Skip("glslc not installed (Debian: apt-get install glslc)")
	}
	dir, vkDir := t.TempDir(), t.TempDir()
	out, err := exec.Command("bash", "shaders/build.sh", dir, vkDir).CombinedOutput()
	if err != nil {
		t.Fatalf("shaders/build.sh: %v\n%s", err, out)
	}
	srcs, _ := filepath.Glob("shaders/*.comp")
	if len(srcs) == 0 {
		t.Fatal("no shaders")
	}
	check := func(fresh, committed string) {
		a, err := os.ReadFile(fresh)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(committed)
		if err != nil {
			t.Errorf("%s: %v (run make shaders)", committed, err)
			return
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from what its source compiles to: run make shaders", committed)
		}
	}
	for _, s := range srcs {
		name := filepath.Base(s[:len(s)-len(".comp")]) + ".spv"
		check(filepath.Join(dir, name), filepath.Join("spv", name))
	}
	committed, _ := filepath.Glob("spv/*.spv")
	if len(committed) != len(srcs) {
		t.Errorf("%d committed .spv for %d shaders: remove the stale ones", len(committed), len(srcs))
	}
	check(filepath.Join(vkDir, "axpy.spv"), "../internal/vk/testdata/axpy.spv")
}
