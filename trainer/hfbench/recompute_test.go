package hfbench

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/kernels/kbench"
	"github.com/loomtrain/loom/models/llm"
	"github.com/loomtrain/loom/models/nn"
)

// BenchmarkRecompute times one training step (forward, backward) of an
// 8-layer LLaMA decoder on 4 × 512 tokens with and without activation
// checkpointing per block (llm.Config.Recompute) and reports the peak live
// heap of one more step (kbench.HeapPeak, GOGC=5) as peak-MB:
//
//	go test ./trainer/hfbench -run '^$' -bench Recompute -benchtime 3x
func BenchmarkRecompute(b *testing.B) {
	const batch, seq = 4, 512
	for _, rc := range []bool{false, true} {
		b.Run(fmt.Sprintf("recompute=%v", rc), func(b *testing.B) {
			p := nn.NewParams()
			m, err := llm.New(p, nn.Rng(1), "", llm.Config{Vocab: 2048, Hidden: 256, Layers: 8, Heads: 4, FFN: 688, Theta: 10000, Recompute: rc})
			if err != nil {
				b.Fatal(err)
			}
			ids := make([]int32, batch*seq)
			for i := range ids {
				ids[i] = int32(i*7919) % 2048
			}
			step := func() {
				p.ZeroGrad()
				tp := kernels.NewTape()
				x := m.EmbedTokens(tp, ids, batch, seq)
				lg := tp.Reshape(m.Logits(tp, m.Forward(tp, x, llm.Layout{})), batch*seq, 2048)
				tp.Backward(tp.CrossEntropy(lg, ids, kernels.CEOptions{}))
			}
			step() // allocate the parameters' gradients outside the measurement
			for b.Loop() {
				step()
			}
			// Measured apart: HeapPeak runs the collector at GOGC=5, which
			// would slow the timed steps.
			runtime.GC() // the timed steps' garbage
			b.ReportMetric(float64(kbench.HeapPeak(200*time.Microsecond, step))/1e6, "peak-MB")
		})
	}
}
