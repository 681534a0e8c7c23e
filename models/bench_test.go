package models

import (
	"testing"

	"github.com/loomtrain/loom/kernels"
)

// BenchmarkTrainStep times one forward + backward + AdamW step of each
// family's small preset (the demo size) on the tiny test batch layout.
func BenchmarkTrainStep(b *testing.B) {
	for _, f := range Families {
		b.Run(string(f), func(b *testing.B) {
			c, _ := Preset(f, "small")
			m, err := New(c, 1)
			if err != nil {
				b.Fatal(err)
			}
			batch := tinyBatch(b, c, 1)
			opt := kernels.NewAdamW(m.Params().Trainable(), kernels.AdamWConfig{LR: 1e-3})
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tp := kernels.NewTape()
				m.Params().ZeroGrad()
				out, err := m.Forward(tp, batch)
				if err != nil {
					b.Fatal(err)
				}
				tp.Backward(out.Loss)
				opt.Step()
			}
		})
	}
}
