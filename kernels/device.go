package kernels

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/loomtrain/loom/kernels/internal/device"
)

// Device is where a tensor's data lives: the host (the zero value, Host)
// or a device opened with OpenDevice. The CPU is the reference and the
// default; every tensor made by New, Zeros, NewParam and the ops on host
// tensors is on the host.
//
// Transfers are explicit: Tensor.To copies a tensor to another device, and
// an op whose inputs are on different devices panics with a *DeviceError.
// An op on device tensors runs the device's kernels and returns a tensor
// on that device; its backward rule runs there too. Work on a device is
// recorded and runs asynchronously in order; reading a device tensor
// (HostData, HostGrad, Item, To(Host)) waits for it.
type Device struct {
	be   device.Backend
	spec string
}

// Host is the CPU.
var Host = Device{}

// IsHost reports whether d is the host.
func (d Device) IsHost() bool { return d.be == nil }

// String is "host" or the spec and the backend's description.
func (d Device) String() string {
	if d.be == nil {
		return "host"
	}
	return d.spec + " (" + d.be.Name() + ")"
}

// Sync waits for the work recorded on d (a no-op on the host).
func (d Device) Sync() error {
	if d.be == nil {
		return nil
	}
	return d.be.Sync()
}

// ErrNoBackend is returned by OpenDevice for a kind no linked-in backend
// provides.
var ErrNoBackend = errors.New("kernels: no backend")

// openDevices caches opened devices by kind and ordinal: a device is opened
// once per process.
var (
	deviceMu    sync.Mutex
	openDevices = map[string]Device{}
)

// OpenDevice opens a device by spec: "host" (or "cpu"), "gpu" (the
// preferred GPU of the first GPU backend linked in), "gpu:N", or a
// backend's own kind ("vulkan", "vulkan:N"). Backends are linked in by
// importing their package, e.g. _ "github.com/loomtrain/loom/kernels/vulkan".
// The same spec returns the same device.
func OpenDevice(spec string) (Device, error) {
	if spec == "" || spec == "host" || spec == "cpu" {
		return Host, nil
	}
	kind, ord := spec, -1
	if i := strings.IndexByte(spec, ':'); i >= 0 {
		n, err := strconv.Atoi(spec[i+1:])
		if err != nil || n < 0 {
			return Host, fmt.Errorf("kernels: device %q: want kind or kind:N with N >= 0", spec)
		}
		kind, ord = spec[:i], n
	}
	key := kind + ":" + strconv.Itoa(ord)
	deviceMu.Lock()
	defer deviceMu.Unlock()
	if d, ok := openDevices[key]; ok {
		return d, nil
	}
	open, ok := device.Lookup(kind)
	if !ok {
		hint := ""
		if _, ok := device.Lookup("gpu"); !ok {
			hint = "; import github.com/loomtrain/loom/kernels/vulkan for gpu"
		}
		return Host, fmt.Errorf("%w for device %q (linked in: %v%s)", ErrNoBackend, spec, device.Kinds(), hint)
	}
	be, err := open(ord)
	if err != nil {
		return Host, fmt.Errorf("kernels: device %q: %w", spec, err)
	}
	d := Device{be: be, spec: spec}
	openDevices[key] = d
	return d, nil
}

// ListDevices describes the devices each linked-in backend can open, one
// line per device ("vulkan: 0: llvmpipe ..."), or the error a backend
// gives. Kinds that alias another's devices ("gpu") are not listed again.
func ListDevices() []string {
	var out []string
	for _, k := range device.Kinds() {
		ds, err := device.List(k)
		if errors.Is(err, device.ErrNoLister) {
			continue
		}
		if err != nil {
			out = append(out, k+": "+err.Error())
			continue
		}
		for _, d := range ds {
			out = append(out, k+": "+d)
		}
	}
	return out
}

// DeviceError is the panic value of an op whose tensors are on different
// devices, or on a device that has no implementation of the op.
type DeviceError struct {
	Op  string
	Msg string
}

func (e *DeviceError) Error() string { return "kernels: " + e.Op + ": " + e.Msg }

// devTensor is the device half of a tensor: its data (and gradient) in
// device buffers. Tensor.d is nil for host tensors.
type devTensor struct {
	be   device.Backend
	spec string
	n    int
	data device.Buffer
	grad device.Buffer // nil until a backward pass reaches the tensor
}

// hasGrad reports whether a gradient reached the device tensor d (nil-safe).
func (d *devTensor) hasGrad() bool { return d != nil && d.grad != nil }

// Device returns where t's data lives.
func (t *Tensor) Device() Device {
	if t.d == nil {
		return Host
	}
	return Device{be: t.d.be, spec: t.d.spec}
}

// OnDevice reports whether t lives on a device (not the host).
func (t *Tensor) OnDevice() bool { return t.d != nil }

// To returns a copy of t on device d (t itself when it is already there):
// Data, Shape, Name, whether it requires a gradient, and Grad when it has
// one. The copy is a leaf: no gradient flows back to t. Moving parameters
// to a device before building the optimizer makes the step run there.
func (t *Tensor) To(d Device) *Tensor {
	if (t.d == nil && d.be == nil) || (t.d != nil && t.d.be == d.be) { // already there (by backend: "gpu" and "vulkan" may name one device)
		return t
	}
	out := &Tensor{Name: t.Name, Shape: append([]int(nil), t.Shape...), requiresGrad: t.requiresGrad}
	switch {
	case d.be == nil: // device → host
		out.Data = t.HostData()
		if t.d.grad != nil {
			out.Grad = t.HostGrad()
		}
	case t.d == nil: // host → device
		out.d = newDevTensor(d.be, d.spec, len(t.Data))
		d.be.Upload(out.d.data, t.Data)
		if t.Grad != nil {
			out.d.grad = d.be.Alloc(len(t.Grad))
			d.be.Upload(out.d.grad, t.Grad)
		}
	default: // device → device, through the host
		return t.To(Host).To(d)
	}
	return out
}

func newDevTensor(be device.Backend, spec string, n int) *devTensor {
	return &devTensor{be: be, spec: spec, n: n, data: be.Alloc(n)}
}

// HostData returns t's values on the host: t.Data itself for a host
// tensor, a fresh copy downloaded from the device otherwise.
func (t *Tensor) HostData() []float32 {
	if t.d == nil {
		return t.Data
	}
	out := make([]float32, t.d.n)
	t.d.be.Download(out, device.View{Buf: t.d.data})
	return out
}

// HostGrad returns t's gradient on the host (t.Grad for a host tensor; a
// downloaded copy, or nil when no gradient reached it, for a device one).
func (t *Tensor) HostGrad() []float32 {
	if t.d == nil {
		return t.Grad
	}
	if t.d.grad == nil {
		return nil
	}
	out := make([]float32, t.d.n)
	t.d.be.Download(out, device.View{Buf: t.d.grad})
	return out
}

// devGrad returns the device gradient buffer of t, allocating zeros on
// first use.
func (t *Tensor) devGrad() device.Buffer {
	if t.d.grad == nil {
		t.d.grad = t.d.be.Alloc(t.d.n)
	}
	return t.d.grad
}

// devGradOrNil is devGrad for a tensor that wants a gradient, else nil.
func devGradOrNil(t *Tensor) device.Buffer {
	if !wants(t) {
		return nil
	}
	return t.devGrad()
}

// devData is the data buffer of a device tensor, or nil for nil t.
func devData(t *Tensor) device.Buffer {
	if t == nil {
		return nil
	}
	return t.d.data
}

// onDevice returns the backend shared by the non-nil tensors ts, with the
// spec of the first, or panics with a *DeviceError when some are on the
// host or on another device.
func onDevice(op string, ts ...*Tensor) (device.Backend, string) {
	ps := make([]**Tensor, len(ts))
	for i := range ts {
		ps[i] = &ts[i]
	}
	return placeOn(op, false, ps...)
}

// place is onDevice for the operands of an op with several: a host
// operand that needs no gradient (a batch input, a mask, a position
// table: a constant of the step) is uploaded to the others' device and
// *t replaced by the copy, so that models need not know where their
// parameters live. A host operand that wants a gradient mixed with device
// operands is a *DeviceError: its gradient would land on the wrong side.
func place(op string, ts ...**Tensor) (device.Backend, string) { return placeOn(op, true, ts...) }

func placeOn(op string, lift bool, ts ...**Tensor) (device.Backend, string) {
	var be device.Backend
	var spec string
	for _, p := range ts {
		t := *p
		if t == nil || t.d == nil {
			continue
		}
		if be == nil {
			be, spec = t.d.be, t.d.spec
		} else if t.d.be != be {
			panic(&DeviceError{Op: op, Msg: fmt.Sprintf("operands on devices %s and %s", spec, t.d.spec)})
		}
	}
	for _, p := range ts {
		t := *p
		if t == nil || t.d != nil {
			continue
		}
		if !lift || be == nil || t.requiresGrad {
			panic(&DeviceError{Op: op, Msg: fmt.Sprintf("%v is on the host and wants a gradient, another operand is on a device; move it with MoveTo or To", t)})
		}
		*p = t.To(Device{be: be, spec: spec})
	}
	return be, spec
}

// MoveTo moves t's data (and gradient) to device d in place: the same
// *Tensor, so a model's parameters can move without the model knowing.
// Host views of t (earlier Data slices) no longer follow it.
func (t *Tensor) MoveTo(d Device) {
	if (t.d == nil && d.be == nil) || (t.d != nil && t.d.be == d.be) {
		return
	}
	c := t.To(d)
	t.Data, t.Grad, t.d = c.Data, c.Grad, c.d
}

// hostOnly panics with a *DeviceError when one of ts is on a device: op
// has no device implementation yet.
func hostOnly(op string, ts ...*Tensor) {
	for _, t := range ts {
		if t != nil && t.d != nil {
			panic(&DeviceError{Op: op, Msg: fmt.Sprintf("no %s implementation on device %s; move %v to the host with To(kernels.Host)", op, t.d.spec, t)})
		}
	}
}

// newOnDevice returns a zeroed tensor of shape on be.
func newOnDevice(be device.Backend, spec string, shape []int) *Tensor {
	n := checkShape("device", shape)
	return &Tensor{Shape: append([]int(nil), shape...), d: newDevTensor(be, spec, n)}
}

// seedDevGrad adds grad (host values) into out's device gradient.
func (t *Tensor) seedDevGrad(grad []float32) {
	g := t.devGrad()
	tmp := t.d.be.Alloc(len(grad))
	t.d.be.Upload(tmp, grad)
	t.d.be.Axpy(len(grad), 1, device.View{Buf: tmp}, device.View{Buf: g})
}

// SetData copies vals into t's data, on whatever device t lives (vals
// must have t.Size() values): how a caller writes a parameter in place
// (BLIP-2 clamps its temperature) without knowing where it is.
func (t *Tensor) SetData(vals []float32) {
	if len(vals) != t.Size() {
		panic(shapeErr("SetData", t.Shape, []int{len(vals)}, "%d values for %d elements", len(vals), t.Size()))
	}
	if t.d == nil {
		copy(t.Data, vals)
		return
	}
	t.d.be.Upload(t.d.data, vals)
}
