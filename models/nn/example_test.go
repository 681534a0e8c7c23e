package nn_test

import (
	"fmt"

	"github.com/loomtrain/loom/models/nn"
)

func ExampleParams_Freeze() {
	p := nn.NewParams()
	rng := nn.Rng(1)
	nn.NewLinear(p, rng, "vit.encoder.layers.0.mlp.fc1", 4, 8, true)
	nn.NewLayerNorm(p, "ln_vision", 4, 1e-6)
	nn.NewLinear(p, rng, "qformer.layer.0.crossattention.query", 4, 4, true)
	n, err := p.Freeze("vit.*")
	if err != nil {
		panic(err)
	}
	fmt.Println("froze", n, "of", len(p.All()), "tensors;", p.Count(), "parameters")
	for _, t := range p.Trainable() {
		fmt.Println("trains", t.Name)
	}
	// Output:
	// froze 2 of 6 tensors; 68 parameters
	// trains ln_vision.weight
	// trains ln_vision.bias
	// trains qformer.layer.0.crossattention.query.weight
	// trains qformer.layer.0.crossattention.query.bias
}

func ExampleUniLM() {
	// BLIP-2's ITG mask over [2 queries; 3 text tokens].
	fmt.Print(nn.UniLM(2, 3))
	// Output:
	// 1 1 0 0 0
	// 1 1 0 0 0
	// 1 1 1 0 0
	// 1 1 1 1 0
	// 1 1 1 1 1
}
