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

// Ring attention in one process: the keys arrive in two blocks (as from two
// ranks); each block's partial output is merged with AttnMerge, and the
// result equals attention over all keys at once. The backward accumulates
// each block's share with the final lse.
func ExampleAttnBlockForward() {
	const nq, nk, h, d = 4, 6, 1, 2
	q := []float32{1, 0, 0, 1, 1, 1, -1, 0}
	k := []float32{1, 0, 0, 1, 1, 1, -1, 0, 0, -1, 2, 1}
	v := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	pos := []int32{0, 1, 2, 3, 4, 5}
	mask := &kernels.AttnMask{Causal: true, QPos: []int32{2, 3, 4, 5}, KPos: pos} // queries are the last 4 tokens
	scale := float32(0.7)

	full, fullLSE := make([]float32, nq*h*d), make([]float32, nq*h)
	kernels.AttnBlockForward(q, k, v, nq, nk, h, d, scale, mask, full, fullLSE)

	o, lse := make([]float32, nq*h*d), make([]float32, nq*h)
	o2, lse2 := make([]float32, nq*h*d), make([]float32, nq*h)
	first := &kernels.AttnMask{Causal: true, QPos: mask.QPos, KPos: pos[:3]}
	second := &kernels.AttnMask{Causal: true, QPos: mask.QPos, KPos: pos[3:]}
	kernels.AttnBlockForward(q, k[:3*d], v[:3*d], nq, 3, h, d, scale, first, o, lse)
	kernels.AttnBlockForward(q, k[3*d:], v[3*d:], nq, 3, h, d, scale, second, o2, lse2)
	kernels.AttnMerge(o, lse, o2, lse2, nq, h, d)

	fmt.Printf("all keys:  %.3f\n", full)
	fmt.Printf("2 blocks:  %.3f\n", o)
	// Output:
	// all keys:  [3.000 4.000 4.000 5.000 3.997 4.997 6.051 7.051]
	// 2 blocks:  [3.000 4.000 4.000 5.000 3.997 4.997 6.051 7.051]
}

// Causal self-attention inside a model: project, split into heads
// ([B, S, H, D], token-major), attend, merge the heads back.
func ExampleTape_Attention() {
	rng := rand.New(rand.NewPCG(1, 1))
	const b, s, dim, heads = 1, 5, 8, 2
	x := kernels.Zeros(b, s, dim).InitNormal(rng, 1)
	wqkv := kernels.NewParam("attn.qkv.weight", 3*dim, dim).InitXavier(rng)
	tp := kernels.NewTape()
	qkv := tp.Split(tp.Linear(x, wqkv, nil), -1, dim, dim, dim)
	split := func(t *kernels.Tensor) *kernels.Tensor { return tp.Reshape(t, b, s, heads, dim/heads) }
	a := tp.Attention(split(qkv[0]), split(qkv[1]), split(qkv[2]), kernels.AttnOptions{Causal: true})
	y := tp.Reshape(a, b, s, dim)
	tp.Backward(tp.Sum(tp.Square(y)))
	fmt.Println(y.Shape, len(wqkv.Grad))
	// Output: [1 5 8] 192
}
