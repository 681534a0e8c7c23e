package vk

import (
	"fmt"
	"runtime"
	"unsafe"
)

// Buffer is a storage buffer with its own memory allocation.
type Buffer struct {
	h, mem uint64
	Size   uint64         // bytes
	Mapped unsafe.Pointer // host address of the memory when host-visible, else nil
}

// memoryType returns the index of a memory type allowed by bits that has
// all of want, or -1.
func (c *Context) memoryType(bits, want uint32) int {
	for i := uint32(0); i < c.mem.memoryTypeCount; i++ {
		if bits&(1<<i) != 0 && c.mem.memoryTypes[i].propertyFlags&want == want {
			return int(i)
		}
	}
	return -1
}

// MemoryFlags returns the property flags of every memory type, for logs.
func (c *Context) MemoryFlags() []uint32 {
	out := make([]uint32, c.mem.memoryTypeCount)
	for i := range out {
		out[i] = c.mem.memoryTypes[i].propertyFlags
	}
	return out
}

// NewBuffer creates a storage buffer of size bytes (usable as a transfer
// source and destination). With host set, its memory is host-visible and
// coherent (preferring cached) and stays mapped: a staging buffer. Without,
// it is device-local.
func (c *Context) NewBuffer(size uint64, host bool) (*Buffer, error) {
	ci := bufferCreateInfo{sType: stBufferCreateInfo, size: size, usage: bufferUsageStorage | bufferUsageTransferSrc | bufferUsageTransferDst}
	b := &Buffer{Size: size}
	if err := check("vkCreateBuffer", call(c.fn.createBuffer, c.dev, uintptr(unsafe.Pointer(&ci)), 0, uintptr(unsafe.Pointer(&b.h)))); err != nil {
		return nil, err
	}
	var req memoryRequirements
	call(c.fn.getBufferMemoryRequirements, c.dev, uintptr(b.h), uintptr(unsafe.Pointer(&req)))
	var idx int
	if host {
		if idx = c.memoryType(req.memoryTypeBits, MemoryHostVisible|MemoryHostCoherent|MemoryHostCached); idx < 0 {
			idx = c.memoryType(req.memoryTypeBits, MemoryHostVisible|MemoryHostCoherent)
		}
	} else if idx = c.memoryType(req.memoryTypeBits, MemoryDeviceLocal); idx < 0 {
		idx = c.memoryType(req.memoryTypeBits, 0)
	}
	if idx < 0 {
		call(c.fn.destroyBuffer, c.dev, uintptr(b.h), 0)
		return nil, fmt.Errorf("vulkan: vkAllocateMemory: no memory type for a %d-byte buffer (host-visible %v, type bits %#x)", size, host, req.memoryTypeBits)
	}
	ai := memoryAllocateInfo{sType: stMemoryAllocateInfo, allocationSize: req.size, memoryTypeIndex: uint32(idx)}
	if err := check("vkAllocateMemory", call(c.fn.allocateMemory, c.dev, uintptr(unsafe.Pointer(&ai)), 0, uintptr(unsafe.Pointer(&b.mem)))); err != nil {
		call(c.fn.destroyBuffer, c.dev, uintptr(b.h), 0)
		return nil, fmt.Errorf("%w (%d bytes)", err, req.size)
	}
	if err := check("vkBindBufferMemory", call(c.fn.bindBufferMemory, c.dev, uintptr(b.h), uintptr(b.mem), 0)); err != nil {
		c.DestroyBuffer(b)
		return nil, err
	}
	if host {
		if err := check("vkMapMemory", call(c.fn.mapMemory, c.dev, uintptr(b.mem), 0, uintptr(wholeSize), 0, uintptr(unsafe.Pointer(&b.Mapped)))); err != nil {
			c.DestroyBuffer(b)
			return nil, err
		}
	}
	return b, nil
}

// DestroyBuffer frees b (which no pending command may use).
func (c *Context) DestroyBuffer(b *Buffer) {
	if b == nil || b.h == 0 {
		return
	}
	if b.Mapped != nil {
		call(c.fn.unmapMemory, c.dev, uintptr(b.mem))
		b.Mapped = nil
	}
	call(c.fn.destroyBuffer, c.dev, uintptr(b.h), 0)
	call(c.fn.freeMemory, c.dev, uintptr(b.mem), 0)
	b.h, b.mem = 0, 0
}

// Floats views the mapped memory of a host-visible buffer as n float32s.
func (b *Buffer) Floats(n int) []float32 {
	if b.Mapped == nil || uint64(n)*4 > b.Size {
		panic("vulkan: Floats on an unmapped or too small buffer")
	}
	return unsafe.Slice((*float32)(b.Mapped), n)
}

// Pipeline is a compute pipeline with its layout: one descriptor set of
// Bindings storage buffers (bindings 0..Bindings-1) and Push bytes of push
// constants.
type Pipeline struct {
	Name      string
	Bindings  int
	Push      int
	module    uint64
	setLayout uint64
	layout    uint64
	pipe      uint64
}

// NewPipeline compiles SPIR-V code (entry point "main") with the given
// specialisation constants (constant_id i takes spec[i], each 32 bits).
func (c *Context) NewPipeline(name string, code []byte, bindings, push int, spec []uint32) (*Pipeline, error) {
	if len(code)%4 != 0 || len(code) < 20 || *(*uint32)(unsafe.Pointer(&code[0])) != 0x07230203 {
		return nil, fmt.Errorf("vulkan: %s: not SPIR-V (%d bytes)", name, len(code))
	}
	if bindings > int(c.Info.MaxStorageBuffers) {
		return nil, fmt.Errorf("vulkan: %s binds %d storage buffers, device %q allows %d per pipeline (maxPerStageDescriptorStorageBuffers)", name, bindings, c.Info.Name, c.Info.MaxStorageBuffers)
	}
	if push > int(c.Info.MaxPushConstants) {
		return nil, fmt.Errorf("vulkan: %s: %d bytes of push constants, device allows %d", name, push, c.Info.MaxPushConstants)
	}
	words := make([]uint32, len(code)/4) // aligned copy
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(code)), code)
	p := &Pipeline{Name: name, Bindings: bindings, Push: push}
	smci := shaderModuleCreateInfo{sType: stShaderModuleCreateInfo, codeSize: uintptr(len(code)), pCode: unsafe.Pointer(&words[0])}
	var pin runtime.Pinner
	defer pin.Unpin()
	pin.Pin(&words[0])
	if err := check("vkCreateShaderModule", call(c.fn.createShaderModule, c.dev, uintptr(unsafe.Pointer(&smci)), 0, uintptr(unsafe.Pointer(&p.module)))); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	binds := make([]descriptorSetLayoutBinding, max(bindings, 1))
	for i := range binds {
		binds[i] = descriptorSetLayoutBinding{binding: uint32(i), descriptorType: descriptorStorageBuffer, descriptorCount: 1, stageFlags: shaderStageCompute}
	}
	pin.Pin(&binds[0])
	dslci := descriptorSetLayoutCreateInfo{sType: stDescriptorSetLayoutCreate, bindingCount: uint32(bindings), pBindings: &binds[0]}
	if err := check("vkCreateDescriptorSetLayout", call(c.fn.createDescriptorSetLayout, c.dev, uintptr(unsafe.Pointer(&dslci)), 0, uintptr(unsafe.Pointer(&p.setLayout)))); err != nil {
		c.DestroyPipeline(p)
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	pcr := pushConstantRange{stageFlags: shaderStageCompute, size: uint32(push)}
	pin.Pin(&pcr)
	pin.Pin(&p.setLayout)
	plci := pipelineLayoutCreateInfo{sType: stPipelineLayoutCreateInfo, setLayoutCount: 1, pSetLayouts: &p.setLayout}
	if push > 0 {
		plci.pushConstantRangeCount, plci.pPushConstantRanges = 1, &pcr
	}
	if err := check("vkCreatePipelineLayout", call(c.fn.createPipelineLayout, c.dev, uintptr(unsafe.Pointer(&plci)), 0, uintptr(unsafe.Pointer(&p.layout)))); err != nil {
		c.DestroyPipeline(p)
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	entry := cstr("main")
	pin.Pin(entry)
	cpci := computePipelineCreateInfo{sType: stComputePipelineCreateInfo, layout: p.layout, basePipelineIndex: -1,
		stage: pipelineShaderStageCreateInfo{sType: stPipelineShaderStageCreate, stage: shaderStageCompute, module: p.module, pName: entry}}
	if len(spec) > 0 {
		ents := make([]specializationMapEntry, len(spec))
		for i := range ents {
			ents[i] = specializationMapEntry{constantID: uint32(i), offset: uint32(4 * i), size: 4}
		}
		data := append([]uint32(nil), spec...)
		pin.Pin(&ents[0])
		pin.Pin(&data[0])
		si := &specializationInfo{mapEntryCount: uint32(len(spec)), pMapEntries: &ents[0], dataSize: uintptr(4 * len(spec)), pData: unsafe.Pointer(&data[0])}
		pin.Pin(si)
		cpci.stage.pSpecializationInfo = si
	}
	if err := check("vkCreateComputePipelines", call(c.fn.createComputePipelines, c.dev, 0, 1, uintptr(unsafe.Pointer(&cpci)), 0, uintptr(unsafe.Pointer(&p.pipe)))); err != nil {
		c.DestroyPipeline(p)
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

// DestroyPipeline frees p and its layouts and module.
func (c *Context) DestroyPipeline(p *Pipeline) {
	if p.pipe != 0 {
		call(c.fn.destroyPipeline, c.dev, uintptr(p.pipe), 0)
	}
	if p.layout != 0 {
		call(c.fn.destroyPipelineLayout, c.dev, uintptr(p.layout), 0)
	}
	if p.setLayout != 0 {
		call(c.fn.destroyDescriptorSetLayout, c.dev, uintptr(p.setLayout), 0)
	}
	if p.module != 0 {
		call(c.fn.destroyShaderModule, c.dev, uintptr(p.module), 0)
	}
	*p = Pipeline{Name: p.Name}
}

// DescriptorPool hands out descriptor sets of storage buffers until Reset.
type DescriptorPool struct {
	h       uint64
	MaxSets int
	Used    int
}

// NewDescriptorPool makes a pool of sets sets holding descriptors storage
// buffer descriptors in all.
func (c *Context) NewDescriptorPool(sets, descriptors int) (*DescriptorPool, error) {
	ps := descriptorPoolSize{typ: descriptorStorageBuffer, count: uint32(descriptors)}
	ci := descriptorPoolCreateInfo{sType: stDescriptorPoolCreateInfo, maxSets: uint32(sets), poolSizeCount: 1, pPoolSizes: &ps}
	var pin runtime.Pinner
	pin.Pin(&ps)
	defer pin.Unpin()
	dp := &DescriptorPool{MaxSets: sets}
	if err := check("vkCreateDescriptorPool", call(c.fn.createDescriptorPool, c.dev, uintptr(unsafe.Pointer(&ci)), 0, uintptr(unsafe.Pointer(&dp.h)))); err != nil {
		return nil, err
	}
	return dp, nil
}

// DestroyDescriptorPool frees dp and every set from it.
func (c *Context) DestroyDescriptorPool(dp *DescriptorPool) {
	call(c.fn.destroyDescriptorPool, c.dev, uintptr(dp.h), 0)
	dp.h = 0
}

// ResetDescriptorPool returns every set of dp to it (none may be in use by
// a pending command buffer).
func (c *Context) ResetDescriptorPool(dp *DescriptorPool) error {
	dp.Used = 0
	return check("vkResetDescriptorPool", call(c.fn.resetDescriptorPool, c.dev, uintptr(dp.h), 0))
}

// BufferRange is a bound region of a buffer: Offset and Size in bytes
// (Size 0 means to the end).
type BufferRange struct {
	Buffer       *Buffer
	Offset, Size uint64
}

// AllocSet allocates a set for p from dp and writes the buffers into its
// bindings 0..len(bufs)-1.
func (c *Context) AllocSet(dp *DescriptorPool, p *Pipeline, bufs []BufferRange) (uint64, error) {
	if len(bufs) != p.Bindings {
		return 0, fmt.Errorf("vulkan: %s: %d buffers for %d bindings", p.Name, len(bufs), p.Bindings)
	}
	layout := p.setLayout
	ai := descriptorSetAllocateInfo{sType: stDescriptorSetAllocateInfo, descriptorPool: dp.h, descriptorSetCount: 1, pSetLayouts: &layout}
	var pin runtime.Pinner
	defer pin.Unpin()
	pin.Pin(&layout)
	var set uint64
	if err := check("vkAllocateDescriptorSets", call(c.fn.allocateDescriptorSets, c.dev, uintptr(unsafe.Pointer(&ai)), uintptr(unsafe.Pointer(&set)))); err != nil {
		return 0, err
	}
	dp.Used++
	if len(bufs) == 0 {
		return set, nil
	}
	infos := make([]descriptorBufferInfo, len(bufs))
	writes := make([]writeDescriptorSet, len(bufs))
	pin.Pin(&infos[0])
	for i, b := range bufs {
		size := b.Size
		if size == 0 {
			size = wholeSize
		}
		infos[i] = descriptorBufferInfo{buffer: b.Buffer.h, offset: b.Offset, rng: size}
		writes[i] = writeDescriptorSet{sType: stWriteDescriptorSet, dstSet: set, dstBinding: uint32(i), descriptorCount: 1,
			descriptorType: descriptorStorageBuffer, pBufferInfo: &infos[i]}
	}
	call(c.fn.updateDescriptorSets, c.dev, uintptr(len(writes)), uintptr(unsafe.Pointer(&writes[0])), 0, 0)
	return set, nil
}

// Commands is a command pool with one primary command buffer and a fence:
// record, Submit, Wait, record again.
type Commands struct {
	c         *Context
	pool      uint64
	cb        handle
	fence     uint64
	recording bool
	pending   bool
	Recorded  int // commands recorded since Begin
}

// NewCommands creates a command pool on the compute queue's family, one
// command buffer and one fence.
func (c *Context) NewCommands() (*Commands, error) {
	k := &Commands{c: c}
	pci := commandPoolCreateInfo{sType: stCommandPoolCreateInfo, flags: commandPoolResetBuffer, queueFamilyIndex: uint32(c.Info.ComputeFamily)}
	if err := check("vkCreateCommandPool", call(c.fn.createCommandPool, c.dev, uintptr(unsafe.Pointer(&pci)), 0, uintptr(unsafe.Pointer(&k.pool)))); err != nil {
		return nil, err
	}
	ai := commandBufferAllocateInfo{sType: stCommandBufferAllocateInfo, commandPool: k.pool, commandBufferCount: 1}
	if err := check("vkAllocateCommandBuffers", call(c.fn.allocateCommandBuffers, c.dev, uintptr(unsafe.Pointer(&ai)), uintptr(unsafe.Pointer(&k.cb)))); err != nil {
		k.Destroy()
		return nil, err
	}
	fci := fenceCreateInfo{sType: stFenceCreateInfo}
	if err := check("vkCreateFence", call(c.fn.createFence, c.dev, uintptr(unsafe.Pointer(&fci)), 0, uintptr(unsafe.Pointer(&k.fence)))); err != nil {
		k.Destroy()
		return nil, err
	}
	return k, nil
}

// Destroy frees the pool, its command buffer and the fence.
func (k *Commands) Destroy() {
	c := k.c
	if k.fence != 0 {
		call(c.fn.destroyFence, c.dev, uintptr(k.fence), 0)
	}
	if k.pool != 0 {
		call(c.fn.destroyCommandPool, c.dev, uintptr(k.pool), 0)
	}
	k.fence, k.pool, k.cb = 0, 0, 0
}

// Recording reports whether commands are being recorded (Begin was called
// and Submit not yet).
func (k *Commands) Recording() bool { return k.recording }

// Begin starts recording (the previous submission must have been waited for).
func (k *Commands) Begin() error {
	if k.pending {
		return fmt.Errorf("vulkan: Begin while a submission is pending")
	}
	c := k.c
	if err := check("vkResetCommandBuffer", call(c.fn.resetCommandBuffer, k.cb, 0)); err != nil {
		return err
	}
	bi := commandBufferBeginInfo{sType: stCommandBufferBeginInfo, flags: commandBufferOneTime}
	if err := check("vkBeginCommandBuffer", call(c.fn.beginCommandBuffer, k.cb, uintptr(unsafe.Pointer(&bi)))); err != nil {
		return err
	}
	k.recording, k.Recorded = true, 0
	return nil
}

// Dispatch records a dispatch of p with descriptor set set, push constant
// bytes push (len p.Push) and gx·gy·gz workgroups, followed by a global
// memory barrier so that the next command sees its writes.
func (k *Commands) Dispatch(p *Pipeline, set uint64, push []byte, gx, gy, gz uint32) {
	c := k.c
	call(c.fn.cmdBindPipeline, k.cb, bindPointCompute, uintptr(p.pipe))
	call(c.fn.cmdBindDescriptorSets, k.cb, bindPointCompute, uintptr(p.layout), 0, 1, uintptr(unsafe.Pointer(&set)), 0, 0)
	if len(push) > 0 {
		call(c.fn.cmdPushConstants, k.cb, uintptr(p.layout), shaderStageCompute, 0, uintptr(len(push)), uintptr(unsafe.Pointer(&push[0])))
	}
	call(c.fn.cmdDispatch, k.cb, uintptr(gx), uintptr(gy), uintptr(gz))
	k.barrier()
	k.Recorded++
}

// Copy records a buffer-to-buffer copy of size bytes, then a barrier.
func (k *Commands) Copy(dst *Buffer, dstOff uint64, src *Buffer, srcOff uint64, size uint64) {
	r := bufferCopy{srcOffset: srcOff, dstOffset: dstOff, size: size}
	call(k.c.fn.cmdCopyBuffer, k.cb, uintptr(src.h), uintptr(dst.h), 1, uintptr(unsafe.Pointer(&r)))
	k.barrier()
	k.Recorded++
}

// Fill records a fill of size bytes (a multiple of 4) of dst with the
// 32-bit word v, then a barrier.
func (k *Commands) Fill(dst *Buffer, off, size uint64, v uint32) {
	call(k.c.fn.cmdFillBuffer, k.cb, uintptr(dst.h), uintptr(off), uintptr(size), uintptr(v))
	k.barrier()
	k.Recorded++
}

// barrier makes every earlier compute, transfer or host write visible to
// later compute, transfer and host accesses. It is coarse (one global
// memory barrier per command, as ggml did before it tracked dependencies)
// and always correct.
func (k *Commands) barrier() {
	mb := memoryBarrier{sType: stMemoryBarrier,
		srcAccessMask: accessShaderWrite | accessTransferWrite | accessHostWrite,
		dstAccessMask: accessShaderRead | accessShaderWrite | accessTransferRead | accessTransferWrite | accessHostRead}
	call(k.c.fn.cmdPipelineBarrier, k.cb, stageCompute|stageTransfer|stageHost, stageCompute|stageTransfer|stageHost, 0,
		1, uintptr(unsafe.Pointer(&mb)), 0, 0, 0, 0)
}

// Submit ends recording and submits the command buffer with the fence.
func (k *Commands) Submit() error {
	c := k.c
	k.recording = false
	if err := check("vkEndCommandBuffer", call(c.fn.endCommandBuffer, k.cb)); err != nil {
		return err
	}
	if err := check("vkResetFences", call(c.fn.resetFences, c.dev, 1, uintptr(unsafe.Pointer(&k.fence)))); err != nil {
		return err
	}
	cb := k.cb
	si := submitInfo{sType: stSubmitInfo, commandBufferCount: 1, pCommandBuffers: &cb}
	var pin runtime.Pinner
	pin.Pin(&cb)
	r := call(c.fn.queueSubmit, c.q, 1, uintptr(unsafe.Pointer(&si)), uintptr(k.fence))
	pin.Unpin()
	if err := check("vkQueueSubmit", r); err != nil {
		return err
	}
	k.pending = true
	return nil
}

// Wait blocks until the last submission has finished.
func (k *Commands) Wait() error {
	if !k.pending {
		return nil
	}
	c := k.c
	// Ten minutes: far beyond any step at the shapes this backend runs, so
	// a lost or hung device becomes an error instead of a hang.
	r := call(c.fn.waitForFences, c.dev, 1, uintptr(unsafe.Pointer(&k.fence)), 1, uintptr(600e9))
	if Result(int32(r)) != 2 { // on VK_TIMEOUT the submission is still pending
		k.pending = false
	}
	return check("vkWaitForFences", r)
}
