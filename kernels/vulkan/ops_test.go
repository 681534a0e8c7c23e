package vulkan_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/kernels/internal/vk"
	"github.com/loomtrain/loom/kernels/vulkan"
)

// gpuOrSkip opens the Vulkan device, or skips when this machine has no
// Vulkan loader or device. CI installs Mesa's lavapipe (.ci/run), so the
// tests run there.
func gpuOrSkip(t testing.TB) kernels.Device {
	t.Helper()
	d, err := kernels.OpenDevice("vulkan")
	if errors.Is(err, vk.ErrNoLoader) || errors.Is(err, vk.ErrNoDevice) {
		t.Skipf("no Vulkan device (install mesa-vulkan-drivers for lavapipe): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func randTensor(rng *rand.Rand, shape ...int) *kernels.Tensor {
	t := kernels.Zeros(shape...)
	t.InitNormal(rng, 1)
	t.SetRequiresGrad(true)
	return t
}

// closeTo reports the first index where got and want differ by more than
// atol + rtol·|want|.
func closeTo(got, want []float32, atol, rtol float64) (int, bool) {
	if len(got) != len(want) {
		return -1, false
	}
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(float64(got[i])) != math.IsNaN(float64(want[i])) || d > atol+rtol*math.Abs(float64(want[i])) {
			return i, false
		}
	}
	return 0, true
}

// TestOpsMatchCPU runs every check of the suite (vulkan.Checks): each
// case's forward on the host and on the device, then a backward pass from
// the same random upstream gradient, comparing the outputs and every
// input's gradient.
func TestOpsMatchCPU(t *testing.T) {
	gpu := gpuOrSkip(t)
	for ci, c := range vulkan.Checks() {
		t.Run(c.Name, func(t *testing.T) {
			if _, err := vulkan.RunCheck(gpu, uint64(ci), c); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func at(x []float32, i int) any {
	if i < 0 || i >= len(x) {
		return fmt.Sprintf("(len %d)", len(x))
	}
	return x[i]
}

// TestSGEMMShapes checks the exported-shape GEMM paths (odd sizes around
// the 64×64 tile, k = 0 and 1) against the host.
func TestSGEMMShapes(t *testing.T) {
	gpu := gpuOrSkip(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range [][3]int{{1, 1, 1}, {1, 65, 3}, {63, 64, 65}, {65, 1, 128}, {100, 100, 1}, {3, 5, 0}, {200, 37, 300}} {
		a, b := randTensor(rng, s[0], s[2]), randTensor(rng, s[2], s[1])
		want := kernels.NewTape().Matmul(a, b).Data
		got := kernels.NewTape().Matmul(a.To(gpu), b.To(gpu)).HostData()
		if i, ok := closeTo(got, want, 1e-4, 1e-4); !ok {
			t.Errorf("m,n,k=%v: [%d] = %v, CPU %v", s, i, at(got, i), at(want, i))
		}
	}
}

func TestDeviceErrors(t *testing.T) {
	gpu := gpuOrSkip(t)
	a := kernels.New([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	b := a.To(gpu)
	// A host constant (no gradient wanted) meets a device tensor: it is
	// uploaded for the op.
	if s := kernels.NewTape().Add(a, b); !s.OnDevice() || fmt.Sprint(s.HostData()) != "[2 4 6 8 10 12]" {
		t.Fatalf("host constant + device tensor: %v on %v", s.HostData(), s.Device())
	}
	// A host tensor that wants a gradient cannot be mixed in.
	hp := kernels.NewParam("hp", 2, 3)
	var de *kernels.DeviceError
	err := catchAny(func() { kernels.NewTape().Add(hp, b) })
	if !errors.As(err, &de) || de.Op != "Add" {
		t.Fatalf("host parameter + device Add: %v, want a *DeviceError naming Add", err)
	}
	t.Log(err)
	err = catchAny(func() { kernels.NewTape().Concat(0, b, hp) })
	if !errors.As(err, &de) || de.Op != "Concat" {
		t.Fatalf("Concat of a device and a host tensor: %v, want a *DeviceError naming Concat", err)
	}
	t.Log(err)
	// MoveTo moves a parameter in place.
	mp := kernels.NewParam("mp", 2, 3)
	mp.Data[4] = 7
	mp.MoveTo(gpu)
	if !mp.OnDevice() || !mp.RequiresGrad() || mp.HostData()[4] != 7 {
		t.Fatalf("MoveTo(gpu): on device %v, data %v", mp.OnDevice(), mp.HostData())
	}
	if mp.MoveTo(kernels.Host); mp.OnDevice() || mp.Data[4] != 7 {
		t.Fatalf("MoveTo(Host): %v", mp.Data)
	}
	if b.Device() != gpu || a.Device() != kernels.Host || b.To(kernels.Host).Device() != kernels.Host {
		t.Error("Device() does not report where the tensors are")
	}
	if gpu.String() == "host" || gpu.Sync() != nil {
		t.Errorf("device %v", gpu)
	}
	for _, l := range kernels.ListDevices() {
		t.Log(l)
	}
}

func catchAny(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err, _ = r.(error)
			if err == nil {
				err = fmt.Errorf("%v", r)
			}
		}
	}()
	f()
	return nil
}

func TestTransfers(t *testing.T) {
	gpu := gpuOrSkip(t)
	p := kernels.NewParam("w", 3, 4)
	for i := range p.Data {
		p.Data[i] = float32(i)
	}
	p.Grad = make([]float32, 12)
	p.Grad[5] = 2
	d := p.To(gpu)
	if !d.RequiresGrad() || d.Name != "w" || d.Size() != 12 || d.Data != nil {
		t.Fatalf("To(gpu): %v requiresGrad=%v size=%d", d, d.RequiresGrad(), d.Size())
	}
	back := d.To(kernels.Host)
	if fmt.Sprint(back.Data) != fmt.Sprint(p.Data) || back.Grad[5] != 2 {
		t.Fatalf("round trip: %v grad %v", back.Data, back.Grad)
	}
	c := d.Clone()
	d.ZeroGrad()
	if fmt.Sprint(c.HostData()) != fmt.Sprint(p.Data) || d.HostGrad()[5] != 0 {
		t.Fatal("Clone or ZeroGrad on the device")
	}
	if v := kernels.Scalar(3.5).To(gpu).Item(); v != 3.5 {
		t.Fatalf("Item = %v", v)
	}
}
