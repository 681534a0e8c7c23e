package vulkan_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/loomtrain/loom/kernels"
)

// TestRingBlocksMatchCPU runs ring attention's steps on the device: the
// key/value sequence in two blocks (global positions and segments in the
// mask), the forward of each block merged into the first, and the
// backward of each block from the final output and log-sum-exp; the
// result must equal the CPU primitives over the whole sequence.
func TestRingBlocksMatchCPU(t *testing.T) {
	gpu := gpuOrSkip(t)
	rng := rand.New(rand.NewPCG(3, 4))
	const nq, nk, h, d, split = 5, 10, 2, 8, 4
	scale := float32(1 / math.Sqrt(d))
	vals := func(n int) []float32 { return randTensor(rng, n).Data }
	q, k, v, do := vals(nq*h*d), vals(nk*h*d), vals(nk*h*d), vals(nq*h*d)
	qpos, kpos := []int32{5, 6, 7, 8, 9}, []int32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	qseg, kseg := []int32{0, 0, 1, 1, 1}, []int32{0, 0, 0, 0, 0, 0, 0, 1, 1, 1}
	mask := func(k0, k1 int) *kernels.AttnMask {
		return &kernels.AttnMask{Causal: true, Prefix: 1, QPos: qpos, KPos: kpos[k0:k1], QSeg: qseg, KSeg: kseg[k0:k1]}
	}
	// The CPU over the whole sequence.
	o, lse := make([]float32, nq*h*d), make([]float32, nq*h)
	kernels.AttnBlockForward(q, k, v, nq, nk, h, d, scale, mask(0, nk), o, lse)
	delta := make([]float32, nq*h)
	kernels.AttnDelta(o, do, nq, h, d, delta)
	dq, dk, dv := make([]float32, nq*h*d), make([]float32, nk*h*d), make([]float32, nk*h*d)
	kernels.AttnBlockBackward(q, k, v, do, lse, delta, nq, nk, h, d, scale, mask(0, nk), dq, dk, dv)

	on := func(x []float32) *kernels.Tensor { return kernels.New(x, len(x)).To(gpu) }
	zeros := func(n int) *kernels.Tensor { return kernels.Zeros(n).To(gpu) }
	Q, DO := on(q), on(do)
	blocks := [][2]int{{0, split}, {split, nk}}
	Ks, Vs := make([]*kernels.Tensor, 2), make([]*kernels.Tensor, 2)
	for i, b := range blocks {
		Ks[i], Vs[i] = on(k[b[0]*h*d:b[1]*h*d]), on(v[b[0]*h*d:b[1]*h*d])
	}
	O, L := zeros(nq*h*d), zeros(nq*h)
	O2, L2 := zeros(nq*h*d), zeros(nq*h)
	kernels.AttnBlockForwardDevice(Q, Ks[0], Vs[0], nq, split, h, d, scale, mask(0, split), O, L)
	kernels.AttnBlockForwardDevice(Q, Ks[1], Vs[1], nq, nk-split, h, d, scale, mask(split, nk), O2, L2)
	kernels.AttnMergeDevice(O, L, O2, L2, nq, h, d)
	check := func(what string, got, want []float32) {
		t.Helper()
		if i, ok := closeTo(got, want, 5e-5, 5e-5); !ok {
			t.Fatalf("%s: [%d] = %v, CPU %v", what, i, at(got, i), at(want, i))
		}
	}
	check("merged o", O.HostData(), o)
	check("merged lse", L.HostData(), lse)
	DQ := zeros(nq * h * d)
	var gotDK, gotDV []float32
	for i, b := range blocks {
		DK, DV := zeros((b[1]-b[0])*h*d), zeros((b[1]-b[0])*h*d)
		kernels.AttnBlockBackwardDevice(Q, Ks[i], Vs[i], O, DO, L, nq, b[1]-b[0], h, d, scale, mask(b[0], b[1]), DQ, DK, DV)
		gotDK, gotDV = append(gotDK, DK.HostData()...), append(gotDV, DV.HostData()...)
	}
	check("dq", DQ.HostData(), dq)
	check("dk", gotDK, dk)
	check("dv", gotDV, dv)
}
