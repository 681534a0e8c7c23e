package vk

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"unsafe"
)

// DeviceInfo describes a physical device (from vkGetPhysicalDeviceProperties).
type DeviceInfo struct {
	Index      int    // position in vkEnumeratePhysicalDevices order
	Name       string // deviceName ("llvmpipe (LLVM 15.0.6, 256 bits)")
	Type       int    // TypeDiscreteGPU, ..., TypeCPU
	APIVersion uint32 // VK_MAKE_API_VERSION encoding
	VendorID   uint32
	DeviceID   uint32

	MaxSharedMemory         uint32 // maxComputeSharedMemorySize, bytes
	MaxWorkGroupInvocations uint32
	MaxWorkGroupSize        [3]uint32
	MaxWorkGroupCount       [3]uint32
	MaxStorageBufferRange   uint32 // bytes one binding may cover
	// MaxStorageBuffers is how many storage buffers one compute pipeline
	// may bind: the smaller of maxPerStageDescriptorStorageBuffers and
	// maxDescriptorSetStorageBuffers (Vulkan guarantees only 4 and 24;
	// attention backward binds 9).
	MaxStorageBuffers uint32
	MaxPushConstants  uint32 // bytes
	MaxAllocations    uint32
	StorageAlignment  uint64 // minStorageBufferOffsetAlignment
	ComputeFamily     int    // the queue family used: compute, preferably without graphics
}

// TypeName is the device type as vulkaninfo prints it.
func (d DeviceInfo) TypeName() string {
	switch d.Type {
	case TypeIntegratedGPU:
		return "integrated GPU"
	case TypeDiscreteGPU:
		return "discrete GPU"
	case TypeVirtualGPU:
		return "virtual GPU"
	case TypeCPU:
		return "CPU"
	}
	return "other"
}

// Version formats APIVersion as major.minor.patch.
func (d DeviceInfo) Version() string {
	v := d.APIVersion
	return fmt.Sprintf("%d.%d.%d", v>>22&0x7f, v>>12&0x3ff, v&0xfff)
}

func (d DeviceInfo) String() string {
	return fmt.Sprintf("%d: %s (%s, Vulkan %s, %d KiB shared memory, %d storage buffers per pipeline)", d.Index, d.Name, d.TypeName(), d.Version(), d.MaxSharedMemory>>10, d.MaxStorageBuffers)
}

type instanceFns struct {
	destroyInstance, enumeratePhysicalDevices, getProperties, getQueueFamilies, getMemoryProperties uintptr
	createDevice, getDeviceProcAddr                                                                 uintptr
}

type instance struct {
	h  handle
	fn instanceFns
}

func newInstance() (*instance, error) {
	if err := load(); err != nil {
		return nil, err
	}
	create, err := instanceProc(0, "vkCreateInstance")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoLoader, err)
	}
	name := cstr("loom")
	app := applicationInfo{sType: stApplicationInfo, pApplicationName: name, pEngineName: name, apiVersion: apiVersion12}
	ci := instanceCreateInfo{sType: stInstanceCreateInfo, pApplicationInfo: &app}
	var pin runtime.Pinner
	pin.Pin(&app)
	pin.Pin(name)
	var h handle
	r := call(create, uintptr(unsafe.Pointer(&ci)), 0, uintptr(unsafe.Pointer(&h)))
	pin.Unpin()
	if err := check("vkCreateInstance", r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoDevice, err)
	}
	in := &instance{h: h}
	t := procTable{resolve: func(n string) (uintptr, error) { return instanceProc(h, n) }}
	in.fn = instanceFns{
		destroyInstance:          t.get("vkDestroyInstance"),
		enumeratePhysicalDevices: t.get("vkEnumeratePhysicalDevices"),
		getProperties:            t.get("vkGetPhysicalDeviceProperties"),
		getQueueFamilies:         t.get("vkGetPhysicalDeviceQueueFamilyProperties"),
		getMemoryProperties:      t.get("vkGetPhysicalDeviceMemoryProperties"),
		createDevice:             t.get("vkCreateDevice"),
		getDeviceProcAddr:        t.get("vkGetDeviceProcAddr"),
	}
	if t.err != nil {
		if in.fn.destroyInstance != 0 {
			call(in.fn.destroyInstance, h, 0)
		}
		return nil, t.err
	}
	return in, nil
}

func (in *instance) destroy() { call(in.fn.destroyInstance, in.h, 0) }

// physical lists the physical devices with a compute queue.
func (in *instance) physical() ([]handle, []DeviceInfo, error) {
	var n uint32
	if err := check("vkEnumeratePhysicalDevices", call(in.fn.enumeratePhysicalDevices, in.h, uintptr(unsafe.Pointer(&n)), 0)); err != nil {
		return nil, nil, err
	}
	hs := make([]handle, n)
	if n > 0 {
		r := call(in.fn.enumeratePhysicalDevices, in.h, uintptr(unsafe.Pointer(&n)), uintptr(unsafe.Pointer(&hs[0])))
		if err := check("vkEnumeratePhysicalDevices", r); err != nil && Result(int32(r)) != 5 { // VK_INCOMPLETE: fewer than counted
			return nil, nil, err
		}
		hs = hs[:n]
	}
	var keep []handle
	var infos []DeviceInfo
	for i, h := range hs {
		d := in.describe(h)
		d.Index = i
		if d.ComputeFamily < 0 {
			continue
		}
		keep = append(keep, h)
		infos = append(infos, d)
	}
	return keep, infos, nil
}

func (in *instance) describe(h handle) DeviceInfo {
	var p [physicalDevicePropsSize]byte
	call(in.fn.getProperties, h, uintptr(unsafe.Pointer(&p[0])))
	u32 := func(off int) uint32 { return *(*uint32)(unsafe.Pointer(&p[off])) }
	u64 := func(off int) uint64 { return *(*uint64)(unsafe.Pointer(&p[off])) }
	l := limitsOffset
	d := DeviceInfo{
		APIVersion: u32(0), VendorID: u32(8), DeviceID: u32(12), Type: int(u32(16)),
		Name:                    strings.TrimRight(string(p[20:20+256]), "\x00"),
		MaxStorageBufferRange:   u32(l + 28),
		MaxStorageBuffers:       min(u32(l+76), u32(l+108)),
		MaxPushConstants:        u32(l + 32),
		MaxAllocations:          u32(l + 36),
		MaxSharedMemory:         u32(l + 216),
		MaxWorkGroupCount:       [3]uint32{u32(l + 220), u32(l + 224), u32(l + 228)},
		MaxWorkGroupInvocations: u32(l + 232),
		MaxWorkGroupSize:        [3]uint32{u32(l + 236), u32(l + 240), u32(l + 244)},
		StorageAlignment:        u64(l + 328),
	}
	if i := strings.IndexByte(d.Name, 0); i >= 0 {
		d.Name = d.Name[:i]
	}
	var n uint32
	call(in.fn.getQueueFamilies, h, uintptr(unsafe.Pointer(&n)), 0)
	fams := make([]queueFamilyProperties, max(n, 1))
	call(in.fn.getQueueFamilies, h, uintptr(unsafe.Pointer(&n)), uintptr(unsafe.Pointer(&fams[0])))
	d.ComputeFamily = -1
	for pass := 0; pass < 2 && d.ComputeFamily < 0; pass++ { // compute without graphics first (async compute), as ggml does
		for i, f := range fams[:n] {
			if f.queueFlags&queueCompute != 0 && f.queueCount > 0 && (pass == 1 || f.queueFlags&queueGraphics == 0) {
				d.ComputeFamily = i
				break
			}
		}
	}
	return d
}

// Devices lists the physical devices that have a compute queue.
func Devices() ([]DeviceInfo, error) {
	in, err := newInstance()
	if err != nil {
		return nil, err
	}
	defer in.destroy()
	_, infos, err := in.physical()
	return infos, err
}

// rank orders device types for the default choice: discrete, integrated,
// virtual, other, CPU.
func rank(t int) int {
	switch t {
	case TypeDiscreteGPU:
		return 0
	case TypeIntegratedGPU:
		return 1
	case TypeVirtualGPU:
		return 2
	case TypeCPU:
		return 4
	}
	return 3
}

type deviceFns struct {
	destroyDevice, getDeviceQueue, deviceWaitIdle                                     uintptr
	createBuffer, destroyBuffer, getBufferMemoryRequirements, bindBufferMemory        uintptr
	allocateMemory, freeMemory, mapMemory, unmapMemory                                uintptr
	createShaderModule, destroyShaderModule, createDescriptorSetLayout                uintptr
	destroyDescriptorSetLayout, createPipelineLayout, destroyPipelineLayout           uintptr
	createComputePipelines, destroyPipeline                                           uintptr
	createDescriptorPool, destroyDescriptorPool, resetDescriptorPool                  uintptr
	allocateDescriptorSets, updateDescriptorSets                                      uintptr
	createCommandPool, destroyCommandPool, allocateCommandBuffers, resetCommandBuffer uintptr
	beginCommandBuffer, endCommandBuffer                                              uintptr
	cmdBindPipeline, cmdBindDescriptorSets, cmdPushConstants, cmdDispatch             uintptr
	cmdPipelineBarrier, cmdCopyBuffer, cmdFillBuffer                                  uintptr
	queueSubmit, queueWaitIdle, createFence, destroyFence, resetFences, waitForFences uintptr
}

// Context is an open logical device with one compute queue.
type Context struct {
	Info DeviceInfo
	in   *instance
	phys handle
	dev  handle
	q    handle
	mem  memoryProperties
	fn   deviceFns
}

// Open opens physical device index (in vkEnumeratePhysicalDevices order,
// as Devices lists them), or the preferred one when index < 0: the first
// discrete GPU, else integrated, virtual, other, and a CPU device (lavapipe)
// last.
func Open(index int) (*Context, error) {
	in, err := newInstance()
	if err != nil {
		return nil, err
	}
	hs, infos, err := in.physical()
	if err != nil {
		in.destroy()
		return nil, err
	}
	if len(hs) == 0 {
		in.destroy()
		return nil, fmt.Errorf("%w: vkEnumeratePhysicalDevices found none (Debian: apt-get install mesa-vulkan-drivers for lavapipe)", ErrNoDevice)
	}
	pick := -1
	if index < 0 {
		order := make([]int, len(infos))
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool { return rank(infos[order[a]].Type) < rank(infos[order[b]].Type) })
		pick = order[0]
	} else {
		for i, d := range infos {
			if d.Index == index {
				pick = i
			}
		}
		if pick < 0 {
			in.destroy()
			return nil, fmt.Errorf("%w: no device %d with a compute queue (found %d)", ErrNoDevice, index, len(infos))
		}
	}
	c := &Context{Info: infos[pick], in: in, phys: hs[pick]}
	if err := c.createDevice(); err != nil {
		in.destroy()
		return nil, err
	}
	return c, nil
}

func (c *Context) createDevice() error {
	call(c.in.fn.getMemoryProperties, c.phys, uintptr(unsafe.Pointer(&c.mem)))
	prio := float32(1)
	qci := deviceQueueCreateInfo{sType: stDeviceQueueCreateInfo, queueFamilyIndex: uint32(c.Info.ComputeFamily), queueCount: 1, pQueuePriorities: &prio}
	dci := deviceCreateInfo{sType: stDeviceCreateInfo, queueCreateInfoCount: 1, pQueueCreateInfos: &qci}
	var pin runtime.Pinner
	pin.Pin(&qci)
	pin.Pin(&prio)
	r := call(c.in.fn.createDevice, c.phys, uintptr(unsafe.Pointer(&dci)), 0, uintptr(unsafe.Pointer(&c.dev)))
	pin.Unpin()
	if err := check("vkCreateDevice", r); err != nil {
		return err
	}
	gdpa := c.in.fn.getDeviceProcAddr
	t := procTable{resolve: func(n string) (uintptr, error) {
		p := cstr(n)
		fn := call(gdpa, c.dev, uintptr(unsafe.Pointer(p)))
		runtime.KeepAlive(p)
		if fn == 0 {
			return 0, fmt.Errorf("vulkan: vkGetDeviceProcAddr(%s) returned NULL", n)
		}
		return fn, nil
	}}
	f := &c.fn
	f.destroyDevice = t.get("vkDestroyDevice")
	f.getDeviceQueue = t.get("vkGetDeviceQueue")
	f.deviceWaitIdle = t.get("vkDeviceWaitIdle")
	f.createBuffer = t.get("vkCreateBuffer")
	f.destroyBuffer = t.get("vkDestroyBuffer")
	f.getBufferMemoryRequirements = t.get("vkGetBufferMemoryRequirements")
	f.bindBufferMemory = t.get("vkBindBufferMemory")
	f.allocateMemory = t.get("vkAllocateMemory")
	f.freeMemory = t.get("vkFreeMemory")
	f.mapMemory = t.get("vkMapMemory")
	f.unmapMemory = t.get("vkUnmapMemory")
	f.createShaderModule = t.get("vkCreateShaderModule")
	f.destroyShaderModule = t.get("vkDestroyShaderModule")
	f.createDescriptorSetLayout = t.get("vkCreateDescriptorSetLayout")
	f.destroyDescriptorSetLayout = t.get("vkDestroyDescriptorSetLayout")
	f.createPipelineLayout = t.get("vkCreatePipelineLayout")
	f.destroyPipelineLayout = t.get("vkDestroyPipelineLayout")
	f.createComputePipelines = t.get("vkCreateComputePipelines")
	f.destroyPipeline = t.get("vkDestroyPipeline")
	f.createDescriptorPool = t.get("vkCreateDescriptorPool")
	f.destroyDescriptorPool = t.get("vkDestroyDescriptorPool")
	f.resetDescriptorPool = t.get("vkResetDescriptorPool")
	f.allocateDescriptorSets = t.get("vkAllocateDescriptorSets")
	f.updateDescriptorSets = t.get("vkUpdateDescriptorSets")
	f.createCommandPool = t.get("vkCreateCommandPool")
	f.destroyCommandPool = t.get("vkDestroyCommandPool")
	f.allocateCommandBuffers = t.get("vkAllocateCommandBuffers")
	f.resetCommandBuffer = t.get("vkResetCommandBuffer")
	f.beginCommandBuffer = t.get("vkBeginCommandBuffer")
	f.endCommandBuffer = t.get("vkEndCommandBuffer")
	f.cmdBindPipeline = t.get("vkCmdBindPipeline")
	f.cmdBindDescriptorSets = t.get("vkCmdBindDescriptorSets")
	f.cmdPushConstants = t.get("vkCmdPushConstants")
	f.cmdDispatch = t.get("vkCmdDispatch")
	f.cmdPipelineBarrier = t.get("vkCmdPipelineBarrier")
	f.cmdCopyBuffer = t.get("vkCmdCopyBuffer")
	f.cmdFillBuffer = t.get("vkCmdFillBuffer")
	f.queueSubmit = t.get("vkQueueSubmit")
	f.queueWaitIdle = t.get("vkQueueWaitIdle")
	f.createFence = t.get("vkCreateFence")
	f.destroyFence = t.get("vkDestroyFence")
	f.resetFences = t.get("vkResetFences")
	f.waitForFences = t.get("vkWaitForFences")
	if t.err != nil {
		if f.destroyDevice != 0 {
			call(f.destroyDevice, c.dev, 0)
		}
		return t.err
	}
	call(f.getDeviceQueue, c.dev, uintptr(c.Info.ComputeFamily), 0, uintptr(unsafe.Pointer(&c.q)))
	return nil
}

// Close waits for the device to go idle and destroys it and the instance.
// Every object made from c must have been destroyed first.
func (c *Context) Close() {
	if c == nil || c.dev == 0 {
		return
	}
	call(c.fn.deviceWaitIdle, c.dev)
	call(c.fn.destroyDevice, c.dev, 0)
	c.dev = 0
	c.in.destroy()
}

// WaitIdle waits until the device has finished all submitted work.
func (c *Context) WaitIdle() error {
	return check("vkDeviceWaitIdle", call(c.fn.deviceWaitIdle, c.dev))
}
