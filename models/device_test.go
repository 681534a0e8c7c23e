package models

import (
	"errors"
	"math"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/kernels/vulkan"
)

// TestDeviceStepMatchesCPU runs two AdamW training steps of every tiny
// family twice from the same weights and batch: on the host, and with the
// parameters moved to the Vulkan device (the model code unchanged). Every
// loss, every parameter gradient of each step (1e-4 absolute + 1e-4
// relative) and every final parameter (1e-4) must agree. CI runs it on
// Mesa's lavapipe; without a Vulkan device it skips with the reason.
//
// AdamW's eps is 1e-3 here, not 1e-8: the first Adam update is
// lr·g/(|g|+eps), i.e. lr·sign(g) where |g| ≫ eps, so a gradient entry
// near zero (BLIP-2's vision_proj has entries of 1e-6 under its
// near-uniform ITC) whose last bits differ would flip by 2·lr = 2e-3.
// With eps = lr an update differs by at most the gradients' difference,
// so the final parameters test the whole step at the gradients'
// tolerance; they still move by up to lr = 1e-3, ten times the tolerance.
func TestDeviceStepMatchesCPU(t *testing.T) {
	gpu, err := kernels.OpenDevice("vulkan")
	if errors.Is(err, vulkan.ErrNoLoader) || errors.Is(err, vulkan.ErrNoDevice) {
		t.Skipf("no Vulkan device (install mesa-vulkan-drivers for lavapipe): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	const tol = 1e-4
	for _, f := range Families {
		t.Run(string(f), func(t *testing.T) {
			host, c := tinyModel(t, f, 11)
			dev, _ := tinyModel(t, f, 11)
			for _, p := range dev.Params().All() {
				p.MoveTo(gpu)
			}
			b := tinyBatch(t, c, 4)
			cfg := kernels.AdamWConfig{LR: 1e-3, WeightDecay: 0.1, Eps: 1e-3}
			optH := kernels.NewAdamW(host.Params().Trainable(), cfg)
			optD := kernels.NewAdamW(dev.Params().Trainable(), cfg)
			for step := 0; step < 2; step++ {
				var losses [2]float32
				for i, m := range []Model{host, dev} {
					if err := kernels.Catch(func() {
						tp := kernels.NewTape()
						m.Params().ZeroGrad()
						out, err := m.Forward(tp, b)
						if err != nil {
							t.Fatal(err)
						}
						losses[i] = out.Loss.Item()
						tp.Backward(out.Loss)
						if i == 1 {
							compareGrads(t, step, host, dev, tol)
						}
					}); err != nil {
						t.Fatalf("step %d on %s: %v", step, []string{"host", "device"}[i], err)
					}
				}
				if d := math.Abs(float64(losses[0] - losses[1])); d > tol || math.IsNaN(float64(losses[1])) {
					t.Fatalf("step %d: loss %v on the device, %v on the host", step, losses[1], losses[0])
				}
				t.Logf("step %d: loss %.6f (host) %.6f (device)", step, losses[0], losses[1])
				optH.Step()
				optD.Step()
			}
			worst, where := 0.0, ""
			hp, dp := host.Params(), dev.Params()
			for _, name := range hp.Names() {
				want, got := hp.Get(name).Data, dp.Get(name).HostData()
				for i := range want {
					if d := math.Abs(float64(got[i] - want[i])); d > worst || math.IsNaN(d) {
						worst, where = d, name
					}
				}
			}
			t.Logf("largest parameter difference after 2 steps: %.3g (%s)", worst, where)
			if worst > tol || math.IsNaN(worst) {
				t.Errorf("parameter %s differs by %.3g after 2 steps, want <= %g", where, worst, tol)
			}
		})
	}
}

// compareGrads fails the test at the first parameter whose gradient on the
// device differs from the host's by more than tol·(1 + |host|).
func compareGrads(t *testing.T, step int, host, dev Model, tol float64) {
	t.Helper()
	hp, dp := host.Params(), dev.Params()
	for _, name := range hp.Names() {
		want, got := hp.Get(name).Grad, dp.Get(name).HostGrad()
		if want == nil || got == nil {
			if nz(want) != nz(got) {
				t.Fatalf("step %d: gradient of %s: host has one %v, device %v", step, name, want != nil, got != nil)
			}
			continue
		}
		for i := range want {
			if d := math.Abs(float64(got[i] - want[i])); d > tol*(1+math.Abs(float64(want[i]))) || math.IsNaN(d) {
				t.Fatalf("step %d: gradient of %s [%d] = %v on the device, %v on the host", step, name, i, got[i], want[i])
			}
		}
	}
}

// nz reports whether g holds a nonzero value (a nil gradient and one of
// zeros are the same for the step).
func nz(g []float32) bool {
	for _, v := range g {
		if v != 0 {
			return true
		}
	}
	return false
}
