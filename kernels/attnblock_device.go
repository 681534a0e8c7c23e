package kernels

import (
	"fmt"

	"github.com/loomtrain/loom/kernels/internal/device"
)

// The block-attention primitives of attnblock.go on device tensors, for
// ring attention over device-resident queries and key/value blocks: the
// same layouts (q [nq, h, d], k and v [nk, h, d], lse [nq, h], flat
// tensors of at least that many values) and the same global-terms mask.
// Each tensor must live on one device; errors name the primitive and the
// tensor.

func devBlock(op string, ts map[string]*Tensor, sizes map[string]int) device.Backend {
	var be device.Backend
	for name, t := range ts {
		if t == nil || t.d == nil {
			panic(&DeviceError{Op: op, Msg: fmt.Sprintf("%s must be a device tensor", name)})
		}
		if be == nil {
			be = t.d.be
		} else if t.d.be != be {
			panic(&DeviceError{Op: op, Msg: fmt.Sprintf("%s is on device %s, another operand elsewhere", name, t.d.spec)})
		}
		if t.d.n < sizes[name] {
			panic(fmt.Errorf("kernels: %s: %s has %d values, needs %d", op, name, t.d.n, sizes[name]))
		}
	}
	return be
}

// AttnBlockForwardDevice is AttnBlockForward on a device: o and lse are
// overwritten with the attention of q over this key block.
func AttnBlockForwardDevice(q, k, v *Tensor, nq, nk, h, d int, scale float32, m *AttnMask, o, lse *Tensor) {
	const op = "AttnBlockForwardDevice"
	checkAttnDims(op, nq, nk, h, d)
	m.check(op, nq, nk)
	hd := h * d
	be := devBlock(op, map[string]*Tensor{"q": q, "k": k, "v": v, "o": o, "lse": lse},
		map[string]int{"q": nq * hd, "k": nk * hd, "v": nk * hd, "o": nq * hd, "lse": nq * h})
	a := device.AttnArgs{Sq: nq, Sk: nk, H: h, D: d, Scale: scale, Q: view(q.d.data, 0), K: view(k.d.data, 0), V: view(v.d.data, 0),
		O: view(o.d.data, 0), LSE: view(lse.d.data, 0), QPos: -1, KPos: -1, QSeg: -1, KSeg: -1}
	if m != nil {
		setAttnMask(be, m, &a)
	}
	be.Attention(a)
}

// AttnMergeDevice is AttnMerge on a device: (o2, lse2) over a disjoint
// key block is folded into (o, lse) in place.
func AttnMergeDevice(o, lse, o2, lse2 *Tensor, nq, h, d int) {
	const op = "AttnMergeDevice"
	be := devBlock(op, map[string]*Tensor{"o": o, "lse": lse, "o2": o2, "lse2": lse2},
		map[string]int{"o": nq * h * d, "o2": nq * h * d, "lse": nq * h, "lse2": nq * h})
	if nq*h > 0 {
		be.AttnMerge(nq*h, d, view(o.d.data, 0), view(lse.d.data, 0), view(o2.d.data, 0), view(lse2.d.data, 0))
	}
}

// AttnBlockBackwardDevice is AttnBlockBackward on a device: it ACCUMULATES
// this key block's contribution into dq, dk and dv (any may be nil), from
// the FINAL merged output o (delta = Σ do·o is computed from it) and the
// final lse.
func AttnBlockBackwardDevice(q, k, v, o, do, lse *Tensor, nq, nk, h, d int, scale float32, m *AttnMask, dq, dk, dv *Tensor) {
	const op = "AttnBlockBackwardDevice"
	checkAttnDims(op, nq, nk, h, d)
	m.check(op, nq, nk)
	hd := h * d
	ts := map[string]*Tensor{"q": q, "k": k, "v": v, "o": o, "do": do, "lse": lse}
	sizes := map[string]int{"q": nq * hd, "k": nk * hd, "v": nk * hd, "o": nq * hd, "do": nq * hd, "lse": nq * h,
		"dq": nq * hd, "dk": nk * hd, "dv": nk * hd}
	for name, t := range map[string]*Tensor{"dq": dq, "dk": dk, "dv": dv} {
		if t != nil {
			ts[name] = t
		}
	}
	be := devBlock(op, ts, sizes)
	a := device.AttnArgs{Sq: nq, Sk: nk, H: h, D: d, Scale: scale, Q: view(q.d.data, 0), K: view(k.d.data, 0), V: view(v.d.data, 0),
		O: view(o.d.data, 0), DO: view(do.d.data, 0), LSE: view(lse.d.data, 0), Delta: view(be.Alloc(max(nq*h, 1)), 0),
		QPos: -1, KPos: -1, QSeg: -1, KSeg: -1}
	if m != nil {
		setAttnMask(be, m, &a)
	}
	if dq != nil {
		a.DQ = view(dq.d.data, 0)
	}
	if dk != nil {
		a.DK = view(dk.d.data, 0)
	}
	if dv != nil {
		a.DV = view(dv.d.data, 0)
	}
	be.AttentionBwd(a)
}
