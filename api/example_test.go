package api_test

import (
	"fmt"

	"github.com/loomtrain/loom/api"
)

func ExampleParseManifest() {
	m, err := api.ParseManifest("job.yaml", []byte(`
name: vila-tiny
recipe: vila
model: {size: tiny}
datasets:
  - {name: coyo, uri: "s3://data/coyo", weight: 1}
global_batch: 16
elastic: {min: 1, max: 4}
stages:
  - {name: align, steps: 100, overrides: {lr: 1e-3, trainable: [projector]}}
  - {name: sft, steps: 50}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Name, m.TotalSteps(), m.WorldSizes(), *m.StageHyperparameters(0).LR, *m.StageHyperparameters(1).LR)

	_, err = api.ParseManifest("job.yaml", []byte("name: x\nrecipe: vila\nmodle: {size: tiny}\n"))
	fmt.Println(err)
	// Output:
	// vila-tiny 150 [1 2 4] 0.001 0.0001
	// job.yaml:3: modle: unknown field; known fields here: checkpoint, datasets, defaults, elastic, eval, failure, global_batch, init, model, name, parallelism, recipe, seed, stages
}
