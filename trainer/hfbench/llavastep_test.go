package hfbench

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/kernels/kbench"
	"github.com/loomtrain/loom/models"
)

// TestLlavaStep runs the LLaVA step against PyTorch on the tiny preset
// where Debian's torch is installed (.ci/run installs it): the same
// weights and batch give the same first loss, both sides train, and the
// reference BLAS is refused by name.
func TestLlavaStep(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Python process")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		t.Skipf("no /usr/bin/python3 with torch: %v", err)
	}
	for _, stage := range []string{"pretrain", "finetune"} {
		o := LlavaStepOptions{Size: "tiny", Stage: stage, Batch: 2, Text: 6, Steps: 2, Threads: 1, LR: 1e-3,
			Python: "/usr/bin/python3", RefDir: "../../models/hf/testdata"}
		r, err := LlavaStep(context.Background(), o)
		if _, ok := err.(*kbench.ReferenceBLASError); ok || (err != nil && strings.Contains(err.Error(), "reference BLAS")) {
			t.Skipf("refused as it should be: %v", err)
		}
		if err != nil {
			t.Fatalf("%s: %v", stage, err)
		}
		if r.LossRelDiff > LossTolerance || r.Trainable == 0 || r.Trainable != r.TorchTrain || !(r.Ratio > 0) {
			t.Errorf("%s: %+v", stage, r)
		}
		// Both sides trained on the same batch at a visible rate: the loss fell.
		if !(r.LastLosses[0] < r.LoomLoss) || !(r.LastLosses[1] < r.TorchLoss) {
			t.Errorf("%s: first loss %v / %v, after %d steps %v: not training", stage, r.LoomLoss, r.TorchLoss, o.Steps+1, r.LastLosses)
		}
		// And along the same trajectory: AdamW on the same gradients.
		if d := (r.LastLosses[0] - r.LastLosses[1]) / r.LastLosses[1]; d > LossTolerance || d < -LossTolerance {
			t.Errorf("%s: after %d steps Loom's loss %v, PyTorch's %v", stage, o.Steps+1, r.LastLosses[0], r.LastLosses[1])
		}
		t.Logf("%s: %d of %d params trained; first loss Loom %.7f PyTorch %.7f (rel %.2g); after: %v", stage, r.Trainable, r.Params, r.LoomLoss, r.TorchLoss, r.LossRelDiff, r.LastLosses)
	}
	if _, err := LlavaStep(context.Background(), LlavaStepOptions{RefDir: t.TempDir(), Python: "/usr/bin/python3"}); err == nil || !strings.Contains(err.Error(), "gen_llava.py") {
		t.Errorf("without the reference: %v", err)
	}
}

// BenchmarkLlavaStepLoom is Loom's side of `loom bench llava-step` alone,
// at one thread (profile with -cpuprofile).
func BenchmarkLlavaStepLoom(b *testing.B) {
	kernels.SetMaxThreads(1)
	defer kernels.SetMaxThreads(0)
	o := LlavaStepOptions{}
	o.defaults()
	cfg, err := models.Preset(models.LLaVA, o.Size)
	if err != nil {
		b.Fatal(err)
	}
	cfg.LabelSmoothing, cfg.Stage = 0, 2
	m, err := models.New(cfg, o.Seed)
	if err != nil {
		b.Fatal(err)
	}
	batch, _ := llavaBatch(cfg, o)
	opt := kernels.NewAdamW(m.Params().Trainable(), kernels.AdamWConfig{LR: o.LR})
	for b.Loop() {
		m.Params().ZeroGrad()
		tp := kernels.NewTape()
		out, err := m.Forward(tp, batch)
		if err != nil {
			b.Fatal(err)
		}
		tp.Backward(out.Loss)
		opt.Step()
	}
}
