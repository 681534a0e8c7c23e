package models_test

import (
	"fmt"
	"sort"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models"
)

// A tiny LLaVA: one image placeholder replaced by the projected patches,
// one training step.
func Example() {
	cfg, err := models.Preset(models.LLaVA, "tiny")
	if err != nil {
		panic(err)
	}
	m, err := models.New(cfg, 1)
	if err != nil {
		panic(err)
	}
	img := kernels.Full(0.5, 1, 3, cfg.ImageSize, cfg.ImageSize)
	batch := &models.Batch{
		Images: img,
		Tokens: [][]int32{{cfg.Special.Image, 10, 11, 12, cfg.Special.EOS}},
	}
	opt := kernels.NewAdamW(m.Params().Trainable(), kernels.AdamWConfig{LR: 1e-2})
	tp := kernels.NewTape()
	out, err := m.Forward(tp, batch)
	if err != nil {
		panic(err)
	}
	tp.Backward(out.Loss)
	opt.Step()
	var terms []string
	for k := range out.Terms {
		terms = append(terms, k)
	}
	sort.Strings(terms)
	fmt.Println("image tokens:", cfg.TokensPerImage())
	fmt.Println("terms:", terms)
	fmt.Println("parameters:", models.ParamCount(cfg) == m.Params().Count())
	// Output:
	// image tokens: 16
	// terms: [lm loss]
	// parameters: true
}
