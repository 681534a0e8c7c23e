package kernels

import "math"

// VQResult is the output of VectorQuantize.
type VQResult struct {
	// Out is the quantised z with the straight-through gradient: its value
	// is the chosen code vector, its gradient flows to z unchanged.
	Out *Tensor
	// Indices is the chosen code of every row.
	Indices []int32
	// Loss = CodebookLoss + β·Commitment, shape [1].
	Loss *Tensor
	// CodebookLoss = mean‖sg(z) − e‖² (moves codes), Commitment =
	// mean‖z − sg(e)‖² (moves the encoder); means over all elements, as in
	// VQ-VAE / taming-transformers.
	CodebookLoss, Commitment *Tensor
}

// nearestCodes returns, for each row of z [n, d], the index of the nearest
// row of codebook [k, d] in Euclidean distance (ties: lowest index), using
// ‖e‖² − 2·z·eᵀ computed with one GEMM.
func nearestCodes(z, codebook []float32, n, k, d int) []int32 {
	dots := make([]float32, n*k)
	sgemm(false, true, n, k, d, 1, z, d, codebook, d, 0, dots, k)
	norms := make([]float32, k)
	for j := 0; j < k; j++ {
		var s float32
		for _, v := range codebook[j*d : (j+1)*d] {
			s += v * v
		}
		norms[j] = s
	}
	idx := make([]int32, n)
	for i := 0; i < n; i++ {
		best, bi := float32(math.Inf(1)), int32(0)
		for j, dt := range dots[i*k : (i+1)*k] {
			if dist := norms[j] - 2*dt; dist < best {
				best, bi = dist, int32(j)
			}
		}
		idx[i] = bi
	}
	return idx
}

// nearestCodesNaive is the reference: explicit squared distances.
func nearestCodesNaive(z, codebook []float64, n, k, d int) []int32 {
	idx := make([]int32, n)
	for i := 0; i < n; i++ {
		best := math.Inf(1)
		for j := 0; j < k; j++ {
			var s float64
			for c := 0; c < d; c++ {
				e := z[i*d+c] - codebook[j*d+c]
				s += e * e
			}
			if s < best {
				best, idx[i] = s, int32(j)
			}
		}
	}
	return idx
}

// VectorQuantize maps each row of z [..., D] to its nearest row of codebook
// [K, D] (VQ-VAE), with the straight-through estimator and the codebook and
// commitment losses (β is the commitment weight, 0.25 in VQ-VAE and VQGAN).
func (tp *Tape) VectorQuantize(z, codebook *Tensor, beta float32) VQResult {
	rows, d := lastDim("VectorQuantize", z)
	if len(codebook.Shape) != 2 || codebook.Shape[1] != d || codebook.Shape[0] == 0 {
		panic(shapeErr("VectorQuantize", z.Shape, codebook.Shape, "want z [..., D] and codebook [K, D]"))
	}
	if z.d != nil || codebook.d != nil {
		return tp.vqDev(z, codebook, beta, rows, d)
	}
	idx := nearestCodes(z.Data, codebook.Data, rows, codebook.Shape[0], d)
	e := tp.Reshape(tp.Embedding(codebook, idx), z.Shape...)
	// Straight-through: Out = z + sg(e − z).
	st := Zeros(z.Shape...)
	for i := range st.Data {
		st.Data[i] = e.Data[i] - z.Data[i]
	}
	out := tp.Add(z, st)
	copy(out.Data, e.Data) // exactly the code, not z + (e − z) rounded
	cb := tp.Mean(tp.Square(tp.Sub(Detach(z), e)))
	cm := tp.Mean(tp.Square(tp.Sub(z, Detach(e))))
	return VQResult{Out: out, Indices: idx, Loss: tp.Add(cb, tp.Scale(cm, beta)), CodebookLoss: cb, Commitment: cm}
}
