package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// loomBinary is the loom binary the process-level tests run (worker and
// coordinator processes, `loom dev`), built once by TestMain.
var loomBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "loom-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	loomBinary = filepath.Join(dir, "loom")
	out, err := exec.Command("go", "build", "-o", loomBinary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the loom binary for the process tests: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
