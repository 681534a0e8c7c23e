package safetensors_test

import (
	"bytes"
	"fmt"

	"github.com/loomtrain/loom/models/safetensors"
)

func Example() {
	var buf bytes.Buffer
	err := safetensors.Write(&buf, []safetensors.Tensor{
		safetensors.F32Tensor("proj.weight", []int{2, 2}, []float32{1, 2, 3, 4}),
		safetensors.BF16Tensor("proj.bias", []int{2}, []float32{0.5, -1}),
	}, map[string]string{"step": "100"})
	if err != nil {
		panic(err)
	}
	f, err := safetensors.Parse(buf.Bytes())
	if err != nil {
		panic(err)
	}
	b, _ := f.Float32("proj.bias")
	in, _ := f.Info("proj.weight")
	fmt.Println(f.Names(), in.DType, in.Shape, b, f.Metadata["format"], f.Metadata["step"])
	// Output: [proj.weight proj.bias] F32 [2 2] [0.5 -1] pt 100
}
