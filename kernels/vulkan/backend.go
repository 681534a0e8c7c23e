package vulkan

import (
	"embed"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"sync"
	"unsafe"

	"github.com/loomtrain/loom/kernels/internal/device"
	"github.com/loomtrain/loom/kernels/internal/vk"
)

//go:generate bash shaders/build.sh

//go:embed spv/*.spv
var spvFS embed.FS

func init() {
	open := func(ordinal int) (device.Backend, error) { return Open(ordinal) }
	device.Register("vulkan", open, list)
	device.Register("gpu", open, nil) // the same devices: listed once, under vulkan
}

func list() ([]string, error) {
	ds, err := vk.Devices()
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.String()
	}
	return out, nil
}

// Devices lists the Vulkan devices with a compute queue, or the reason
// there are none (wrapping vk.ErrNoLoader or vk.ErrNoDevice).
func Devices() ([]vk.DeviceInfo, error) { return vk.Devices() }

// wg is the workgroup size of the elementwise and row kernels.
const wg = 256

// maxSets is how many dispatches one submission holds before the
// descriptor pool is full and the recorded work is submitted.
const maxSets = 4096

// Backend is one Vulkan device running Loom's kernels. Its methods record
// work into one command buffer, which is submitted when the host needs a
// result (Download, Sync) or when the descriptor pool is full: a training
// step's forward and backward are one or a few submissions, not one per
// op.
type Backend struct {
	mu    sync.Mutex
	ctx   *vk.Context
	cmds  *vk.Commands
	pool  *vk.DescriptorPool
	pipes map[string]*vk.Pipeline
	tile  gemmTile
	dummy *vk.Buffer // bound where an op has no buffer (no affine weight)

	free        map[uint64][]*vk.Buffer // device buffers by size class, ready for reuse
	garbage     []*vk.Buffer            // dropped by Go while work was recorded: reusable after the next wait
	stagingFree map[uint64][]*vk.Buffer // host-visible staging buffers by size class
	stagingBusy []*vk.Buffer            // staging used by the recorded work

	// Counters for tests and logs.
	Dispatches, Submits int
}

// gemmTile is the tile configuration of gemm.comp (its specialisation
// constants): BM×BN outputs per workgroup, BK deep, TM×TN per thread.
type gemmTile struct{ bm, bn, bk, tm, tn uint32 }

func (t gemmTile) threads() uint32 { return (t.bm / t.tm) * (t.bn / t.tn) }
func (t gemmTile) shared() uint32  { return (t.bm + t.bn) * t.bk * 4 }
func (t gemmTile) spec() []uint32  { return []uint32{t.bm, t.bn, t.bk, t.tm, t.tn, t.threads()} }

var (
	openMu sync.Mutex
	opened = map[int]*Backend{}
)

// Open opens Vulkan device ordinal (vkEnumeratePhysicalDevices order), or
// the preferred one (discrete GPU first, CPU devices last) when ordinal < 0.
// A device is opened once per process.
func Open(ordinal int) (*Backend, error) {
	openMu.Lock()
	defer openMu.Unlock()
	if b := opened[ordinal]; b != nil {
		return b, nil
	}
	ctx, err := vk.Open(ordinal)
	if err != nil {
		return nil, err
	}
	b := &Backend{ctx: ctx, pipes: map[string]*vk.Pipeline{}, free: map[uint64][]*vk.Buffer{}, stagingFree: map[uint64][]*vk.Buffer{}}
	// The largest tile whose shared memory and thread count the device allows.
	for _, t := range []gemmTile{{64, 64, 16, 4, 4}, {32, 32, 16, 2, 2}, {32, 32, 8, 4, 4}} {
		if t.shared() <= ctx.Info.MaxSharedMemory && t.threads() <= ctx.Info.MaxWorkGroupInvocations && t.threads() <= ctx.Info.MaxWorkGroupSize[0] {
			b.tile = t
			break
		}
	}
	if b.tile.bm == 0 || ctx.Info.MaxWorkGroupInvocations < wg || ctx.Info.MaxPushConstants < 128 {
		ctx.Close()
		return nil, fmt.Errorf("vulkan: device %s is below the backend's needs (%d invocations per workgroup, %d bytes of push constants, %d of shared memory)",
			ctx.Info.Name, ctx.Info.MaxWorkGroupInvocations, ctx.Info.MaxPushConstants, ctx.Info.MaxSharedMemory)
	}
	if b.cmds, err = ctx.NewCommands(); err != nil {
		ctx.Close()
		return nil, err
	}
	if b.pool, err = ctx.NewDescriptorPool(maxSets, 6*maxSets); err != nil {
		ctx.Close()
		return nil, err
	}
	if b.dummy, err = ctx.NewBuffer(256, false); err != nil {
		ctx.Close()
		return nil, err
	}
	opened[ordinal] = b
	return b, nil
}

// Info describes the device.
func (b *Backend) Info() vk.DeviceInfo { return b.ctx.Info }

// Name says which device this is.
func (b *Backend) Name() string {
	return fmt.Sprintf("vulkan:%d %s, %s", b.ctx.Info.Index, b.ctx.Info.Name, b.ctx.Info.TypeName())
}

// buffer is a device buffer of n float32 (or int32) words.
type buffer struct {
	n  int
	vb *vk.Buffer
}

func (x *buffer) Len() int { return x.n }

func vbuf(x device.Buffer) *vk.Buffer { return x.(*buffer).vb }

// sizeClass rounds a byte count up to a power of two (at least 256), so
// that freed buffers are reused by later allocations of similar size.
func sizeClass(bytes uint64) uint64 {
	if bytes <= 256 {
		return 256
	}
	return 1 << bits.Len64(bytes-1)
}

func (b *Backend) must(err error) {
	if err != nil {
		panic(err)
	}
}

// Alloc returns a zeroed buffer of n words, from the pool when one of its
// size class is free. The buffer goes back to the pool when Go drops it.
func (b *Backend) Alloc(n int) device.Buffer {
	b.mu.Lock()
	defer b.mu.Unlock()
	size := sizeClass(uint64(max(n, 1)) * 4)
	var vb *vk.Buffer
	if l := b.free[size]; len(l) > 0 {
		vb = l[len(l)-1]
		b.free[size] = l[:len(l)-1]
	} else {
		var err error
		vb, err = b.ctx.NewBuffer(size, false)
		if err != nil {
			b.flushLocked() // buffers dropped since the last wait may free enough
			runtime.GC()
			if vb, err = b.ctx.NewBuffer(size, false); err != nil {
				panic(fmt.Errorf("vulkan: alloc of %d words: %w", n, err))
			}
		}
	}
	b.begin()
	b.cmds.Fill(vb, 0, size, 0)
	x := &buffer{n: n, vb: vb}
	runtime.AddCleanup(x, b.release, vb)
	return x
}

// release takes back a buffer Go no longer references. Recorded work may
// still use it, so it is reused only after the next wait.
func (b *Backend) release(vb *vk.Buffer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmds.Recording() {
		b.garbage = append(b.garbage, vb)
		return
	}
	b.free[vb.Size] = append(b.free[vb.Size], vb)
}

// begin starts recording if nothing is being recorded (mu held).
func (b *Backend) begin() {
	if !b.cmds.Recording() {
		b.must(b.cmds.Begin())
	}
}

// flushLocked submits the recorded work, waits for it, and recycles what
// it used (mu held).
func (b *Backend) flushLocked() {
	if !b.cmds.Recording() {
		return
	}
	b.must(b.cmds.Submit())
	b.Submits++
	b.must(b.cmds.Wait())
	b.must(b.ctx.ResetDescriptorPool(b.pool))
	for _, vb := range b.garbage {
		b.free[vb.Size] = append(b.free[vb.Size], vb)
	}
	b.garbage = b.garbage[:0]
	for _, vb := range b.stagingBusy {
		b.stagingFree[vb.Size] = append(b.stagingFree[vb.Size], vb)
	}
	b.stagingBusy = b.stagingBusy[:0]
}

// Sync waits for all recorded work.
func (b *Backend) Sync() (err error) {
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(error)
			if !ok {
				panic(r)
			}
			err = e
		}
	}()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	return nil
}

// staging returns a host-visible buffer of at least bytes, in use until
// the next wait (mu held).
func (b *Backend) staging(bytes uint64) *vk.Buffer {
	size := sizeClass(bytes)
	var sb *vk.Buffer
	if l := b.stagingFree[size]; len(l) > 0 {
		sb = l[len(l)-1]
		b.stagingFree[size] = l[:len(l)-1]
	} else {
		var err error
		sb, err = b.ctx.NewBuffer(size, true)
		b.must(err)
	}
	b.stagingBusy = append(b.stagingBusy, sb)
	return sb
}

func (b *Backend) upload(dst device.Buffer, src unsafe.Pointer, words int) {
	if words == 0 {
		return
	}
	if words > dst.Len() {
		panic(fmt.Errorf("vulkan: upload of %d words into a buffer of %d", words, dst.Len()))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	bytes := uint64(words) * 4
	sb := b.staging(bytes)
	copy(unsafe.Slice((*byte)(sb.Mapped), bytes), unsafe.Slice((*byte)(src), bytes))
	b.begin()
	b.cmds.Copy(vbuf(dst), 0, sb, 0, bytes)
}

// Upload copies src into dst (recorded: it lands in order with the other work).
func (b *Backend) Upload(dst device.Buffer, src []float32) {
	if len(src) > 0 {
		b.upload(dst, unsafe.Pointer(&src[0]), len(src))
	}
}

// UploadInt32 copies indices into dst.
func (b *Backend) UploadInt32(dst device.Buffer, src []int32) {
	if len(src) > 0 {
		b.upload(dst, unsafe.Pointer(&src[0]), len(src))
	}
}

// Download waits for the recorded work and copies len(dst) words from src.
func (b *Backend) Download(dst []float32, src device.View) {
	if len(dst) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	bytes := uint64(len(dst)) * 4
	sb := b.staging(bytes)
	b.begin()
	b.cmds.Copy(sb, 0, vbuf(src.Buf), uint64(src.Off)*4, bytes)
	b.flushLocked()
	copy(dst, sb.Floats(len(dst)))
}

// Fill sets n words of dst to v.
func (b *Backend) Fill(dst device.View, n int, v float32) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.begin()
	b.cmds.Fill(vbuf(dst.Buf), uint64(dst.Off)*4, uint64(n)*4, math.Float32bits(v))
}

// Copy copies n words.
func (b *Backend) Copy(dst, src device.View, n int) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.begin()
	b.cmds.Copy(vbuf(dst.Buf), uint64(dst.Off)*4, vbuf(src.Buf), uint64(src.Off)*4, uint64(n)*4)
}

// pipeline returns the cached pipeline of shader name with specialisation
// constants spec (mu held).
func (b *Backend) pipeline(name string, bindings, push int, spec []uint32) *vk.Pipeline {
	key := fmt.Sprint(name, spec)
	if p := b.pipes[key]; p != nil {
		return p
	}
	code, err := spvFS.ReadFile("spv/" + name + ".spv")
	b.must(err)
	p, err := b.ctx.NewPipeline(name, code, bindings, push, spec)
	b.must(err)
	b.pipes[key] = p
	return p
}

// grid splits groups workgroups into a 2-D grid within the device's
// per-dimension limit (the shaders linearise y·numX + x).
func (b *Backend) grid(groups int) (uint32, uint32) {
	lim := int(min(b.ctx.Info.MaxWorkGroupCount[0], 65535))
	if groups <= lim {
		return uint32(max(groups, 1)), 1
	}
	return uint32(lim), uint32((groups + lim - 1) / lim)
}

// dispatch records one dispatch of shader name over bufs (nil binds the
// dummy buffer) with push constant words push.
func (b *Backend) dispatch(name string, spec []uint32, bufs []device.Buffer, push []uint32, gx, gy, gz uint32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pipeline(name, len(bufs), 4*len(push), spec)
	if b.pool.Used >= b.pool.MaxSets {
		b.flushLocked()
	}
	b.begin()
	rs := make([]vk.BufferRange, len(bufs))
	for i, x := range bufs {
		if x == nil {
			rs[i] = vk.BufferRange{Buffer: b.dummy}
		} else {
			rs[i] = vk.BufferRange{Buffer: vbuf(x)}
		}
	}
	set, err := b.ctx.AllocSet(b.pool, p, rs)
	b.must(err)
	var pb []byte
	if len(push) > 0 {
		pb = unsafe.Slice((*byte)(unsafe.Pointer(&push[0])), 4*len(push))
	}
	b.cmds.Dispatch(p, set, pb, gx, gy, gz)
	b.Dispatches++
}

// elementwise dispatches shader name with one thread per item.
func (b *Backend) elementwise(name string, items int, bufs []device.Buffer, push ...uint32) {
	if items == 0 {
		return
	}
	gx, gy := b.grid((items + wg - 1) / wg)
	b.dispatch(name, []uint32{wg}, bufs, push, gx, gy, 1)
}

// rowwise dispatches shader name with one workgroup per row.
func (b *Backend) rowwise(name string, rows int, bufs []device.Buffer, push ...uint32) {
	if rows == 0 {
		return
	}
	gx, gy := b.grid(rows)
	b.dispatch(name, []uint32{128}, bufs, push, gx, gy, 1)
}

func f32(v float32) uint32 { return math.Float32bits(v) }

func b2u(v bool) uint32 {
	if v {
		return 1
	}
	return 0
}

// Axpy sets y += a·x over n words.
func (b *Backend) Axpy(n int, a float32, x, y device.View) {
	b.elementwise("axpy", n, []device.Buffer{x.Buf, y.Buf}, uint32(n), uint32(x.Off), uint32(y.Off), f32(a))
}

// Gemm runs the tiled GEMM.
func (b *Backend) Gemm(g device.Gemm) {
	if g.M == 0 || g.N == 0 || g.Batch == 0 {
		return
	}
	if g.K == 0 { // an empty sum: C = beta·C
		for z := 0; z < g.Batch; z++ {
			for i := 0; i < g.M; i++ {
				c := device.View{Buf: g.C.Buf, Off: g.C.Off + z*g.SC + i*g.LDC}
				if g.Beta == 0 {
					b.Fill(c, g.N, 0)
				} else {
					b.elementwise("unary", g.N, []device.Buffer{c.Buf, c.Buf}, uint32(g.N), uint32(device.ScaleShift), f32(g.Beta), 0)
				}
			}
		}
		return
	}
	t := b.tile
	gx := (g.N + int(t.bn) - 1) / int(t.bn)
	gy := (g.M + int(t.bm) - 1) / int(t.bm)
	b.dispatch("gemm", t.spec(), []device.Buffer{g.A.Buf, g.B.Buf, g.C.Buf}, []uint32{
		uint32(g.M), uint32(g.N), uint32(g.K), uint32(g.LDA), uint32(g.LDB), uint32(g.LDC),
		uint32(g.A.Off), uint32(g.B.Off), uint32(g.C.Off), uint32(g.SA), uint32(g.SB), uint32(g.SC),
		b2u(g.TransA), b2u(g.TransB), f32(g.Alpha), f32(g.Beta),
	}, uint32(gx), uint32(gy), uint32(g.Batch))
}

// bcastPush packs a broadcast's dimensions and strides (MaxDims each).
func bcastPush(dims, s1, s2 []int) []uint32 {
	out := make([]uint32, 3*device.MaxDims)
	for i := range dims {
		out[i], out[device.MaxDims+i], out[2*device.MaxDims+i] = uint32(dims[i]), uint32(s1[i]), uint32(s2[i])
	}
	return out
}

func prod(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// Binary runs out = a ∘ b with broadcasting.
func (b *Backend) Binary(op device.BinaryOp, bc device.Bcast, a, x, out device.Buffer) {
	n := prod(bc.Out)
	push := append([]uint32{uint32(n), uint32(op), uint32(len(bc.Out)), 0}, bcastPush(bc.Out, bc.SA, bc.SB)...)
	b.elementwise("binary", n, []device.Buffer{a, x, out}, push...)
}

// BinaryBwd accumulates the gradient of operand which into dst.
func (b *Backend) BinaryBwd(op device.BinaryOp, bc device.Bcast, which int, a, x, dout, dst device.Buffer) {
	st, so := bc.SA, bc.SB
	if which == 1 {
		st, so = bc.SB, bc.SA
	}
	nt, r := 1, 1
	for i, d := range bc.Out {
		if st[i] == 0 {
			r *= d
		} else if d > 0 {
			nt = max(nt, st[i]*d)
		}
	}
	nt = min(nt, dst.Len())
	push := append([]uint32{uint32(nt), uint32(op), uint32(which), uint32(len(bc.Out)), uint32(r), 0, 0, 0}, bcastPush(bc.Out, st, so)...)
	b.elementwise("binary_bwd", nt, []device.Buffer{a, x, dout, dst}, push...)
}

// Unary runs y = f(x) (ScaleShift: y = s·x + t).
func (b *Backend) Unary(op device.UnaryOp, n int, s, t float32, x, y device.Buffer) {
	b.elementwise("unary", n, []device.Buffer{x, y}, uint32(n), uint32(op), f32(s), f32(t))
}

// UnaryBwd accumulates dx += f'(x)·dy.
func (b *Backend) UnaryBwd(op device.UnaryOp, n int, s float32, x, dy, dx device.Buffer) {
	b.elementwise("unary_bwd", n, []device.Buffer{x, dy, dx}, uint32(n), uint32(op), f32(s), 0)
}

// SwiGLU runs out = SiLU(g)·u.
func (b *Backend) SwiGLU(n int, g, u, out device.Buffer) {
	b.elementwise("swiglu", n, []device.Buffer{g, u, out}, uint32(n))
}

// SwiGLUBwd accumulates dg and du (either may be nil).
func (b *Backend) SwiGLUBwd(n int, g, u, dout, dg, du device.Buffer) {
	b.elementwise("swiglu_bwd", n, []device.Buffer{g, u, dout, dg, du}, uint32(n), b2u(dg != nil), b2u(du != nil))
}

// Softmax runs (Log)Softmax over rows.
func (b *Backend) Softmax(rows, n int, log bool, x, y device.Buffer) {
	b.rowwise("softmax", rows, []device.Buffer{x, y}, uint32(rows), uint32(n), b2u(log))
}

// SoftmaxBwd accumulates dx from the output y.
func (b *Backend) SoftmaxBwd(rows, n int, log bool, y, dy, dx device.Buffer) {
	b.rowwise("softmax_bwd", rows, []device.Buffer{y, dy, dx}, uint32(rows), uint32(n), b2u(log))
}

func normFlags(a device.NormArgs) uint32 {
	f := uint32(0)
	if a.W != nil {
		f |= 1
	}
	if a.B != nil {
		f |= 2
	}
	if a.RMS {
		f |= 4
	}
	return f
}

// Norm runs LayerNorm or RMSNorm forward, saving mean and rstd.
func (b *Backend) Norm(a device.NormArgs) {
	b.rowwise("norm", a.Rows, []device.Buffer{a.X, a.W, a.B, a.Y, a.Mean, a.Rstd}, uint32(a.Rows), uint32(a.C), normFlags(a), f32(a.Eps))
}

// NormBwd accumulates DX, DW and DB (each may be nil).
func (b *Backend) NormBwd(a device.NormArgs) {
	f := normFlags(a)
	if a.DX != nil {
		b.rowwise("norm_bwd", a.Rows, []device.Buffer{a.X, a.W, a.Mean, a.Rstd, a.DY, a.DX}, uint32(a.Rows), uint32(a.C), f&^2)
	}
	if a.DW != nil || a.DB != nil {
		pf := f & 4
		if a.DW != nil {
			pf |= 1
		}
		if a.DB != nil {
			pf |= 2
		}
		b.elementwise("norm_param", a.C, []device.Buffer{a.X, a.Mean, a.Rstd, a.DY, a.DW, a.DB}, uint32(a.Rows), uint32(a.C), pf)
	}
}

// CrossEntropy runs the forward (a.Loss set) or the backward (a.DLogits set).
func (b *Backend) CrossEntropy(a device.CEArgs) {
	if a.Loss != nil {
		b.dispatch("ce", []uint32{wg}, []device.Buffer{a.LogP, a.Targets, a.Weights, a.Loss, nil},
			[]uint32{uint32(a.Rows), uint32(a.V), 0, f32(a.Eps), f32(a.InvNorm)}, 1, 1, 1)
		return
	}
	n := a.Rows * a.V
	gx, gy := b.grid((n + wg - 1) / wg)
	b.dispatch("ce", []uint32{wg}, []device.Buffer{a.LogP, a.Targets, a.Weights, a.DLoss, a.DLogits},
		[]uint32{uint32(a.Rows), uint32(a.V), 1, f32(a.Eps), f32(a.InvNorm)}, gx, gy, 1)
}

// Sum sets out[0] = s·Σx.
func (b *Backend) Sum(n int, s float32, x, out device.Buffer) {
	b.dispatch("sum", []uint32{wg}, []device.Buffer{x, out}, []uint32{uint32(n), 0, f32(s)}, 1, 1, 1)
}

// SumBwd accumulates dx[i] += s·dout[0].
func (b *Backend) SumBwd(n int, s float32, dout, dx device.Buffer) {
	b.elementwise("sum", n, []device.Buffer{dx, dout}, uint32(n), 1, f32(s))
}

// AdamWStep runs one AdamW update.
func (b *Backend) AdamWStep(a device.AdamW) {
	b.elementwise("adamw", a.N, []device.Buffer{a.P, a.G, a.M, a.V}, uint32(a.N),
		f32(a.B1), f32(a.B2), f32(a.Eps), f32(a.Shrink), f32(a.StepSize), f32(a.InvS))
}

// attnPush packs the attention push constants; out are the five
// per-shader output offsets.
func attnPush(a device.AttnArgs, out ...int) []uint32 {
	flags := uint32(0)
	if a.Causal {
		flags |= 1
	}
	if a.QSeg >= 0 {
		flags |= 2
	}
	if a.KSeg >= 0 {
		flags |= 4
	}
	off := func(o int) uint32 { return uint32(max(o, 0)) }
	push := []uint32{uint32(a.Sq), uint32(a.Sk), uint32(a.H), uint32(a.D), f32(a.Scale), flags, uint32(a.Prefix),
		uint32(a.Q.Off), uint32(a.K.Off), uint32(a.V.Off), off(a.QPos), off(a.KPos), off(a.QSeg), off(a.KSeg), 0, 0, 0, 0, 0}
	for i, o := range out {
		push[14+i] = uint32(o)
	}
	return push
}

func (b *Backend) checkAttn(op string, a device.AttnArgs) {
	if a.D < 1 || a.D > device.MaxHeadDim {
		panic(fmt.Errorf("vulkan: %s: head dimension %d outside [1, %d]", op, a.D, device.MaxHeadDim))
	}
	if a.Causal && (a.QPos < 0 || a.KPos < 0) {
		panic(fmt.Errorf("vulkan: %s: a causal mask needs query and key positions", op))
	}
}

// Attention runs the attention forward of one query block over one key
// block: one thread per (query, head), an online softmax over the keys.
func (b *Backend) Attention(a device.AttnArgs) {
	if a.Sq == 0 || a.H == 0 {
		return
	}
	b.checkAttn("Attention", a)
	if a.Sk == 0 {
		b.Fill(a.O, a.Sq*a.H*a.D, 0)
		b.Fill(a.LSE, a.Sq*a.H, float32(math.Inf(-1)))
		return
	}
	b.elementwise("attn_fwd", a.Sq*a.H, []device.Buffer{a.Q.Buf, a.K.Buf, a.V.Buf, a.Mask, a.O.Buf, a.LSE.Buf},
		attnPush(a, a.O.Off, a.LSE.Off)...)
}

// AttentionBwd computes Delta, then accumulates DQ (one thread per query
// row and head) and DK, DV (one thread per key row and head): no atomics.
func (b *Backend) AttentionBwd(a device.AttnArgs) {
	if a.Sq == 0 || a.H == 0 {
		return
	}
	b.checkAttn("AttentionBwd", a)
	rows := a.Sq * a.H
	b.elementwise("attn_delta", rows, []device.Buffer{a.O.Buf, a.DO.Buf, a.Delta.Buf},
		uint32(rows), uint32(a.D), uint32(a.O.Off), uint32(a.DO.Off), uint32(a.Delta.Off))
	if a.Sk == 0 {
		return
	}
	if a.DQ.Buf != nil {
		b.elementwise("attn_bwd_q", rows, []device.Buffer{a.Q.Buf, a.K.Buf, a.V.Buf, a.Mask, a.DO.Buf, a.LSE.Buf, a.Delta.Buf, a.DQ.Buf},
			attnPush(a, a.DO.Off, a.LSE.Off, a.Delta.Off, a.DQ.Off)...)
	}
	if a.DK.Buf != nil || a.DV.Buf != nil {
		dk, dv := a.DK, a.DV
		if dk.Buf == nil { // the shader writes both; give it scratch
			dk = device.View{Buf: b.Alloc(a.Sk * a.H * a.D)}
		}
		if dv.Buf == nil {
			dv = device.View{Buf: b.Alloc(a.Sk * a.H * a.D)}
		}
		b.elementwise("attn_bwd_kv", a.Sk*a.H, []device.Buffer{a.Q.Buf, a.K.Buf, a.V.Buf, a.Mask, a.DO.Buf, a.LSE.Buf, a.Delta.Buf, dk.Buf, dv.Buf},
			attnPush(a, a.DO.Off, a.LSE.Off, a.Delta.Off, dk.Off, dv.Off)...)
	}
}

// IndexCopy runs the movement ops' gather/scatter kernel.
func (b *Backend) IndexCopy(n int, s float32, acc bool, src device.View, sidx, didx device.Buffer, dst device.View) {
	flags := uint32(0)
	if sidx != nil {
		flags |= 1
	}
	if didx != nil {
		flags |= 2
	}
	if acc {
		flags |= 4
	}
	b.elementwise("index_copy", n, []device.Buffer{src.Buf, sidx, didx, dst.Buf}, uint32(n), uint32(src.Off), uint32(dst.Off), flags, f32(s))
}

// SegSum runs the segment sums (scatter-add without atomics).
func (b *Backend) SegSum(m int, s float32, acc bool, src, offs, list, dst device.Buffer) {
	b.elementwise("seg_sum", m, []device.Buffer{src, offs, list, dst}, uint32(m), b2u(acc), f32(s))
}

// RoPE runs the pairwise rotation (or, bwd, accumulates its transpose).
func (b *Backend) RoPE(n, h, d, npos int, bwd bool, x, ca, cb, partner, y device.Buffer) {
	b.elementwise("rope", n, []device.Buffer{x, ca, cb, partner, y}, uint32(n), uint32(h), uint32(d), uint32(npos), b2u(bwd))
}

// NearestCode runs VQ's nearest-code search, one thread per row.
func (b *Backend) NearestCode(n, k, d int, z, codebook, idx device.Buffer) {
	b.elementwise("vq_nearest", n, []device.Buffer{z, codebook, idx}, uint32(n), uint32(k), uint32(d))
}

// ErrNoLoader and ErrNoDevice are what opening a device wraps when this
// machine has no Vulkan loader, or a loader and no device with a compute
// queue (errors.Is): the cases where tests skip.
var (
	ErrNoLoader = vk.ErrNoLoader
	ErrNoDevice = vk.ErrNoDevice
)

// AttnMerge folds a partial attention result into another, in place.
func (b *Backend) AttnMerge(rows, d int, o, lse, o2, lse2 device.View) {
	b.elementwise("attn_merge", rows, []device.Buffer{o.Buf, lse.Buf, o2.Buf, lse2.Buf},
		uint32(rows), uint32(d), uint32(o.Off), uint32(lse.Off), uint32(o2.Off), uint32(lse2.Off))
}
