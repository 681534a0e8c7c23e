package gemm_test

import (
	"fmt"

	"github.com/loomtrain/loom/kernels/internal/gemm"
)

// A linear layer's forward pass, y = x·Wᵀ, with x 2×3 and W 2×3 (out×in).
func ExampleSgemm() {
	x := []float32{
		1, 2, 3,
		4, 5, 6,
	}
	w := []float32{
		1, 0, -1,
		0.5, 0.5, 0.5,
	}
	y := make([]float32, 2*2)
	gemm.Sgemm(false, true, 2, 2, 3, 1, x, 3, w, 3, 0, y, 2)
	fmt.Println(y)
	// Output: [-2 3 -2 7.5]
}

// The weight gradient of that layer, dW = dYᵀ·x (transA), accumulated into an
// existing gradient with beta = 1, checked against the reference loop.
func ExampleSgemmRef() {
	x := []float32{1, 2, 3, 4, 5, 6}  // 2×3
	dy := []float32{1, 0, 0.5, -1}    // 2×2
	dw := []float32{1, 1, 1, 0, 0, 0} // 2×3, already holds a gradient
	ref := append([]float32(nil), dw...)
	gemm.Sgemm(true, false, 2, 3, 2, 1, dy, 2, x, 3, 1, dw, 3)
	gemm.SgemmRef(true, false, 2, 3, 2, 1, dy, 2, x, 3, 1, ref, 3)
	fmt.Println(dw)
	fmt.Println(ref)
	// Output:
	// [4 5.5 7 -4 -5 -6]
	// [4 5.5 7 -4 -5 -6]
}

func ExampleSetMaxThreads() {
	gemm.SetMaxThreads(1) // e.g. one sgemm per worker goroutine
	fmt.Println(gemm.MaxThreads())
	gemm.SetMaxThreads(0) // back to runtime.GOMAXPROCS(0)
	// Output: 1
}
