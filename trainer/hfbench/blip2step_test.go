package hfbench

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/kernels/kbench"
)

// TestBlip2Step runs the BLIP-2 stage-1 step against PyTorch on the tiny
// preset where Debian's torch is installed (.ci/run installs it): the
// same weights, batch and ITM negatives give the same ITC, ITM and ITG on
// the first forward, both sides train, and the reference BLAS is refused.
func TestBlip2Step(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Python process")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		t.Skipf("no /usr/bin/python3 with torch: %v", err)
	}
	o := Blip2StepOptions{Size: "tiny", Batch: 4, Text: 8, Steps: 3, Threads: 1, LR: 1e-3, Python: "/usr/bin/python3"}
	r, err := Blip2Step(context.Background(), o)
	if _, ok := err.(*kbench.ReferenceBLASError); ok || (err != nil && strings.Contains(err.Error(), "reference BLAS")) {
		t.Skipf("refused as it should be: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Blip2Terms {
		if !(r.RelDiff[k] <= LossTolerance) || !(r.LoomLosses[k] > 0) {
			t.Errorf("%s: Loom %v, PyTorch %v", k, r.LoomLosses[k], r.TorchLosses[k])
		}
	}
	if r.Trainable == 0 || r.Trainable == r.Params || r.Trainable != r.TorchTrain || !(r.Ratio > 0) {
		t.Errorf("%+v", r)
	}
	// Both sides trained: the loss fell.
	if !(r.LastLosses[0] < r.LoomLosses["loss"]) || !(r.LastLosses[1] < r.TorchLosses["loss"]) {
		t.Errorf("first loss %v / %v, after %d steps %v: not training", r.LoomLosses["loss"], r.TorchLosses["loss"], o.Steps+1, r.LastLosses)
	}
	t.Logf("%d of %d params trained; first losses Loom %v PyTorch %v (rel %v); after: %v", r.Trainable, r.Params, r.LoomLosses, r.TorchLosses, r.RelDiff, r.LastLosses)
	if _, err := Blip2Step(context.Background(), Blip2StepOptions{Batch: 3, Python: "/usr/bin/python3"}); err == nil || !strings.Contains(err.Error(), "at least 4") {
		t.Errorf("batch 3: %v", err)
	}
}

// BenchmarkBlip2StepLoom is Loom's side of `loom bench blip2-step` alone,
// at one thread (profile with -cpuprofile).
func BenchmarkBlip2StepLoom(b *testing.B) {
	kernels.SetMaxThreads(1)
	defer kernels.SetMaxThreads(0)
	o := Blip2StepOptions{}
	o.defaults()
	s, err := newBlip2Step(o)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := s.step(); err != nil {
			b.Fatal(err)
		}
	}
}
