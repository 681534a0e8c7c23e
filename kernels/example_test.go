package kernels_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/loomtrain/loom/kernels"
)

// A two-layer MLP learns XOR-like labels: the tape records the forward
// pass, Backward fills every parameter's Grad, AdamW updates in place.
func Example() {
	rng := rand.New(rand.NewPCG(1, 2))
	w1 := kernels.NewParam("mlp.fc1.weight", 16, 2).InitXavier(rng)
	b1 := kernels.NewParam("mlp.fc1.bias", 16)
	w2 := kernels.NewParam("mlp.fc2.weight", 2, 16).InitXavier(rng)
	b2 := kernels.NewParam("mlp.fc2.bias", 2)
	params := []*kernels.Tensor{w1, b1, w2, b2}
	opt := kernels.NewAdamW(params, kernels.AdamWConfig{LR: 0.02, WeightDecay: 0.01})

	x := kernels.New([]float32{0, 0, 0, 1, 1, 0, 1, 1}, 4, 2)
	y := []int32{0, 1, 1, 0}
	for step := 0; step <= 60; step++ {
		tp := kernels.NewTape()
		h := tp.GELU(tp.Linear(x, w1, b1))
		logits := tp.Linear(h, w2, b2)
		loss := tp.CrossEntropy(logits, y, kernels.CEOptions{})
		for _, p := range params {
			p.ZeroGrad()
		}
		tp.Backward(loss)
		if _, err := kernels.ClipGradNorm(params, 1); err != nil {
			panic(err)
		}
		opt.Step()
		if step%20 == 0 {
			fmt.Printf("step %3d loss %.2f\n", step, loss.Item())
		}
	}
	// Output:
	// step   0 loss 0.78
	// step  20 loss 0.51
	// step  40 loss 0.12
	// step  60 loss 0.01
}
