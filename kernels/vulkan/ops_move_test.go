package vulkan_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/loomtrain/loom/kernels"
)

// TestNearestCodeIndices checks the device's VQ indices against the CPU's
// on more rows than the op case.
func TestNearestCodeIndices(t *testing.T) {
	gpu := gpuOrSkip(t)
	rng := rand.New(rand.NewPCG(5, 5))
	z, cb := randTensor(rng, 300, 16), randTensor(rng, 64, 16)
	want := kernels.NewTape().VectorQuantize(z, cb, 0.25).Indices
	got := kernels.NewTape().VectorQuantize(z.To(gpu), cb.To(gpu), 0.25).Indices
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("indices\n%v\nCPU\n%v", got, want)
	}
}
