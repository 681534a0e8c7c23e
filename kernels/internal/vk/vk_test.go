package vk

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
)

// openOrSkip opens the preferred device, or skips when this machine has no
// Vulkan loader or device (CI installs lavapipe, so it has one there).
func openOrSkip(t *testing.T) *Context {
	t.Helper()
	c, err := Open(-1)
	if errors.Is(err, ErrNoLoader) || errors.Is(err, ErrNoDevice) {
		t.Skipf("no Vulkan: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestDevices(t *testing.T) {
	c := openOrSkip(t)
	ds, err := Devices()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		t.Logf("%v", d)
	}
	if c.Info.MaxSharedMemory < 16<<10 || c.Info.MaxPushConstants < 128 || c.Info.MaxWorkGroupInvocations < 128 || c.Info.MaxStorageBuffers < 4 {
		t.Errorf("limits below the Vulkan minimums: %+v", c.Info)
	}
	if _, err := Open(len(ds) + 5); !errors.Is(err, ErrNoDevice) {
		t.Errorf("Open(%d) = %v, want ErrNoDevice", len(ds)+5, err)
	}
}

// TestAxpy runs a dispatch end to end: staging upload, copy to a
// device-local buffer, the shader, copy back, and checks every value.
func TestAxpy(t *testing.T) {
	c := openOrSkip(t)
	code, err := os.ReadFile("testdata/axpy.spv")
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.NewPipeline("axpy", code, 2, 8, []uint32{64})
	if err != nil {
		t.Fatal(err)
	}
	defer c.DestroyPipeline(p)
	const n = 1000
	size := uint64(4 * n)
	stage, err := c.NewBuffer(2*size, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.DestroyBuffer(stage)
	x, err := c.NewBuffer(size, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.DestroyBuffer(x)
	y, err := c.NewBuffer(size, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.DestroyBuffer(y)
	h := stage.Floats(2 * n)
	for i := 0; i < n; i++ {
		h[i], h[n+i] = float32(i), 1
	}
	dp, err := c.NewDescriptorPool(4, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer c.DestroyDescriptorPool(dp)
	k, err := c.NewCommands()
	if err != nil {
		t.Fatal(err)
	}
	defer k.Destroy()
	for round := 0; round < 2; round++ { // the second round reuses pool, command buffer and fence
		if err := c.ResetDescriptorPool(dp); err != nil {
			t.Fatal(err)
		}
		set, err := c.AllocSet(dp, p, []BufferRange{{Buffer: x}, {Buffer: y}})
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Begin(); err != nil {
			t.Fatal(err)
		}
		k.Copy(x, 0, stage, 0, size)
		k.Copy(y, 0, stage, size, size)
		push := make([]byte, 8)
		binary.LittleEndian.PutUint32(push, n)
		binary.LittleEndian.PutUint32(push[4:], math.Float32bits(2))
		k.Dispatch(p, set, push, (n+63)/64, 1, 1)
		k.Dispatch(p, set, push, (n+63)/64, 1, 1)
		k.Copy(stage, 0, y, 0, size)
		if err := k.Submit(); err != nil {
			t.Fatal(err)
		}
		if err := k.Wait(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if want := float32(4*i + 1); h[i] != want {
				t.Fatalf("round %d: y[%d] = %v, want %v", round, i, h[i], want)
			}
		}
		for i := 0; i < n; i++ {
			h[i], h[n+i] = float32(i), 1
		}
	}
}

func TestErrorNamesCall(t *testing.T) {
	c := openOrSkip(t)
	if _, err := c.NewPipeline("bad", []byte{1, 2, 3, 4}, 1, 0, nil); err == nil {
		t.Fatal("NewPipeline accepted non-SPIR-V")
	}
	// More storage buffers than the device binds per pipeline: refused by
	// name before anything is created.
	code, err := os.ReadFile("testdata/axpy.spv")
	if err != nil {
		t.Fatal(err)
	}
	n := int(c.Info.MaxStorageBuffers) + 1
	if _, err := c.NewPipeline("wide", code, n, 8, []uint32{64}); err == nil || !strings.Contains(err.Error(), "wide binds") {
		t.Errorf("NewPipeline with %d bindings (device allows %d) = %v, want a refusal naming the kernel", n, c.Info.MaxStorageBuffers, err)
	}
	_, err = c.NewBuffer(1<<62, false)
	var ve *Error
	if !errors.As(err, &ve) || ve.Call == "" {
		t.Fatalf("NewBuffer(2^62) = %v, want an *Error naming the call", err)
	}
	t.Logf("%v", err)
}
