//go:build !novulkan

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/kernels/vulkan"
	"github.com/loomtrain/loom/models"
)

// `loom bench device` is the device check of docs/gpu.md: one command,
// needing only the binary, that says which Vulkan device it found, runs
// the op suite against the CPU, and times GEMM, attention and a recipe
// step on the device beside the host (and PyTorch CUDA where the machine
// has it).

type deviceBenchOpts struct {
	device  string
	rounds  int
	python  string
	skipOps bool
}

func newBenchDeviceCmd() *cobra.Command {
	o := deviceBenchOpts{}
	c := &cobra.Command{
		Use:   "device",
		Short: "Check a GPU: the device Vulkan sees, every op against the CPU, then GEMM, attention and a BLIP-2 step timed on it",
		Long: `Opens the Vulkan device (--device gpu or gpu:N), prints what it is, and
fails clearly when no Vulkan loader or ICD is installed. Then it runs the
op suite (every op the models use, forward and backward, kernels/vulkan
Checks) on the device against the CPU, and times sgemm, attention forward
and backward and a BLIP-2 small stage-1 training step on the device and on
the host, in GFLOP/s or steps/s, with the ratio to PyTorch CUDA when
` + "`" + `python3 -c "import torch; torch.cuda.is_available()"` + "`" + ` says it has one.
On a CPU implementation of Vulkan (Mesa's lavapipe) the timings say
nothing about GPU speed: it says so, and only correctness counts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBenchDevice(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	c.Flags().StringVar(&o.device, "device", "gpu", "the Vulkan device: gpu (the first) or gpu:N (loom version lists them)")
	c.Flags().IntVar(&o.rounds, "rounds", 3, "timed rounds of each measurement (the best is kept)")
	c.Flags().StringVar(&o.python, "python", "/usr/bin/python3", "Python with PyTorch for the CUDA baseline (skipped when it has no CUDA)")
	c.Flags().BoolVar(&o.skipOps, "skip-ops", false, "skip the op suite (timings only)")
	return c
}

func init() { benchCmd.AddCommand(newBenchDeviceCmd()) }

func runBenchDevice(ctx context.Context, w io.Writer, o deviceBenchOpts) error {
	infos, lerr := vulkan.Devices()
	if lerr != nil {
		return fmt.Errorf("no Vulkan device: %w (install the GPU's Vulkan ICD, e.g. the NVIDIA driver's, or Mesa's mesa-vulkan-drivers; vulkaninfo --summary shows what the loader finds)", lerr)
	}
	for _, d := range infos {
		fmt.Fprintf(w, "vulkan device %s\n", d.String())
	}
	dev, err := kernels.OpenDevice(o.device)
	if err != nil {
		return fmt.Errorf("--device %s: %w", o.device, err)
	}
	fmt.Fprintf(w, "using %s\n", dev.String())
	software := false
	for _, d := range infos {
		if strings.Contains(dev.String(), d.Name) && d.TypeName() == "CPU" {
			software = true
		}
	}
	if software {
		fmt.Fprintln(w, "note: this device is a CPU implementation of Vulkan: the timings below say nothing about GPU speed; only the op suite's verdict counts")
	}

	failed := 0
	if !o.skipOps {
		checks := vulkan.Checks()
		fmt.Fprintf(w, "\nop suite: %d checks, device against the CPU (forward and every input's gradient)\n", len(checks))
		for i, c := range checks {
			if err := ctx.Err(); err != nil {
				return err
			}
			worst, err := vulkan.RunCheck(dev, uint64(i), c)
			if err != nil {
				failed++
				fmt.Fprintf(w, "  FAIL %-28s %v\n", c.Name, err)
				continue
			}
			fmt.Fprintf(w, "  ok   %-28s worst %.2f of the tolerance\n", c.Name, worst)
		}
		fmt.Fprintf(w, "op suite: %d of %d passed\n", len(checks)-failed, len(checks))
	}

	torch := probeTorchCUDA(ctx, o.python)
	fmt.Fprintf(w, "\nPyTorch CUDA baseline: %s\n", torch.note)
	rng := rand.New(rand.NewPCG(1, 2))
	fmt.Fprintln(w, "\nsgemm (best of rounds, GFLOP/s):")
	for _, s := range []sgemmShape{{M: 1024, N: 1024, K: 1024}, {M: 1024, N: 3072, K: 768}, {M: 196, N: 768, K: 768}} {
		a, b := kernels.Zeros(s.M, s.K), kernels.Zeros(s.K, s.N)
		a.InitNormal(rng, 1)
		b.InitNormal(rng, 1)
		ad, bd := a.To(dev), b.To(dev)
		host := bestOf(o.rounds, func() { kernels.NewTape().Matmul(a, b) })
		on, err := bestOfErr(o.rounds, func() error {
			out := kernels.NewTape().Matmul(ad, bd)
			_ = out.HostData() // waits for the device
			return nil
		})
		if err != nil {
			return fmt.Errorf("sgemm %v on the device: %w", s, err)
		}
		line := fmt.Sprintf("  %-18s device %8.1f  host %8.1f  device/host %.2f", s.String(), s.flops()/on/1e9, s.flops()/host/1e9, host/on)
		if t, ok := torch.gemm[fmt.Sprintf("%dx%dx%d", s.M, s.N, s.K)]; ok {
			line += fmt.Sprintf("  PyTorch CUDA %8.1f  device/PyTorch %.2f", s.flops()/t/1e9, t/on)
		}
		fmt.Fprintln(w, line)
	}

	fmt.Fprintln(w, "\nattention forward+backward (B=1, H=8, D=64, causal; GFLOP/s):")
	for _, T := range []int{256, 1024} {
		q, k, v := kernels.Zeros(1, T, 8, 64), kernels.Zeros(1, T, 8, 64), kernels.Zeros(1, T, 8, 64)
		for _, x := range []*kernels.Tensor{q, k, v} {
			x.InitNormal(rng, 1)
			x.SetRequiresGrad(true)
		}
		// Counted FLOPs: QKᵀ and PV are 4·T²·D per head, halved by the
		// causal mask; the backward does about 2.5× the forward.
		flops := 2 * float64(T) * float64(T) * 64 * 8 * 3.5
		step := func(q, k, v *kernels.Tensor) func() {
			return func() {
				tp := kernels.NewTape()
				out := tp.Attention(q, k, v, kernels.AttnOptions{Causal: true})
				tp.Backward(tp.Sum(out))
				_ = q.HostGrad()
			}
		}
		host := bestOf(o.rounds, step(q, k, v))
		qd, kd, vd := q.To(dev), k.To(dev), v.To(dev)
		on, err := bestOfErr(o.rounds, func() error { return kernels.Catch(step(qd, kd, vd)) })
		if err != nil {
			return fmt.Errorf("attention T=%d on the device: %w", T, err)
		}
		fmt.Fprintf(w, "  T=%-5d device %8.1f  host %8.1f  device/host %.2f\n", T, flops/on/1e9, flops/host/1e9, host/on)
	}

	fmt.Fprintln(w, "\nBLIP-2 small, stage 1 (ITC+ITM+ITG), one forward+backward of 8 pairs:")
	hostStep, devStep, lossH, lossD, err := blip2DeviceStep(dev, o.rounds)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  device %.3fs  host %.3fs  device/host %.2f  loss %.6f (device) %.6f (host)\n", devStep, hostStep, hostStep/devStep, lossD, lossH)
	if d := math.Abs(lossD - lossH); d > 1e-3*(1+math.Abs(lossH)) || math.IsNaN(lossD) {
		failed++
		fmt.Fprintf(w, "  FAIL the device's loss differs from the host's by %.2g\n", d)
	}
	if failed > 0 {
		return fmt.Errorf("device check: %d failures (see above)", failed)
	}
	fmt.Fprintln(w, "\ndevice check passed")
	return nil
}

// blip2DeviceStep times one forward+backward of BLIP-2 small's first
// stage on the host and on dev from the same weights and batch.
func blip2DeviceStep(dev kernels.Device, rounds int) (host, on, lossH, lossD float64, err error) {
	c, err := models.Preset(models.BLIP2, "small")
	if err != nil {
		return 0, 0, 0, 0, err
	}
	mh, err := models.New(c, 3)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	md, _ := models.New(c, 3)
	for _, p := range md.Params().All() {
		p.MoveTo(dev)
	}
	rng := rand.New(rand.NewPCG(4, 4))
	const n = 8
	imgs := kernels.Zeros(n, 3, c.ImageSize, c.ImageSize)
	imgs.InitNormal(rng, 1)
	rows := make([][]int32, n)
	for i := range rows {
		rows[i] = []int32{c.Special.BOS}
		for range 12 {
			rows[i] = append(rows[i], int32(rng.IntN(200))+1)
		}
	}
	b := &models.Batch{Images: imgs, Tokens: rows, Seed: 5}
	step := func(m models.Model, loss *float64) func() error {
		return func() error {
			return kernels.Catch(func() {
				tp := kernels.NewTape()
				m.Params().ZeroGrad()
				out, ferr := m.Forward(tp, b)
				if ferr != nil {
					panic(ferr)
				}
				*loss = float64(out.Loss.Item())
				tp.Backward(out.Loss)
			})
		}
	}
	if host, err = bestOfErr(rounds, step(mh, &lossH)); err != nil {
		return 0, 0, 0, 0, fmt.Errorf("BLIP-2 step on the host: %w", err)
	}
	if on, err = bestOfErr(rounds, step(md, &lossD)); err != nil {
		return 0, 0, 0, 0, fmt.Errorf("BLIP-2 step on the device: %w", err)
	}
	return host, on, lossH, lossD, nil
}

func bestOf(rounds int, f func()) float64 {
	t, _ := bestOfErr(rounds, func() error { f(); return nil })
	return t
}

// bestOfErr runs f once to warm up (pipelines, buffers), then rounds
// times, and returns the fastest run in seconds.
func bestOfErr(rounds int, f func() error) (float64, error) {
	if err := f(); err != nil {
		return 0, err
	}
	best := math.Inf(1)
	for range max(rounds, 1) {
		t0 := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		best = min(best, time.Since(t0).Seconds())
	}
	return best, nil
}

// torchCUDA is what PyTorch CUDA measured, or why it did not.
type torchCUDA struct {
	note string
	gemm map[string]float64 // "MxNxK" → best seconds
}

// torchGEMMScript times float32 matmuls on CUDA (TF32 off, as Loom's
// GEMMs are full float32) and prints {"device": ..., "gemm": {...}}.
const torchGEMMScript = `
import json, sys, time, torch
if not torch.cuda.is_available():
    print(json.dumps({"error": "torch.cuda.is_available() is False"})); sys.exit(0)
torch.backends.cuda.matmul.allow_tf32 = False
out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "gemm": {}}
for m, n, k in [(1024, 1024, 1024), (1024, 3072, 768), (196, 768, 768)]:
    a = torch.randn(m, k, device="cuda"); b = torch.randn(k, n, device="cuda")
    torch.matmul(a, b); torch.cuda.synchronize()
    best = 1e9
    for _ in range(5):
        t = time.perf_counter(); torch.matmul(a, b); torch.cuda.synchronize(); best = min(best, time.perf_counter() - t)
    out["gemm"]["%dx%dx%d" % (m, n, k)] = best
print(json.dumps(out))
`

func probeTorchCUDA(ctx context.Context, python string) torchCUDA {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "-c", torchGEMMScript).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			msg := strings.TrimSpace(string(ee.Stderr))
			if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
				msg = msg[i+1:]
			}
			return torchCUDA{note: fmt.Sprintf("not available (%s: %s)", python, msg)}
		}
		return torchCUDA{note: fmt.Sprintf("not available (%s: %v)", python, err)}
	}
	var r struct {
		Error, Device, Torch string
		Gemm                 map[string]float64
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return torchCUDA{note: fmt.Sprintf("not available (unreadable output %q: %v)", out, err)}
	}
	if r.Error != "" {
		return torchCUDA{note: "not available (" + r.Error + ")"}
	}
	return torchCUDA{note: fmt.Sprintf("PyTorch %s on %s (float32, TF32 off)", r.Torch, r.Device), gemm: r.Gemm}
}
